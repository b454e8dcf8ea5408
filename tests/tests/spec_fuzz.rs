//! Fuzz-style: 3,000 generated and mutated specs (valid and invalid YAML,
//! extreme numbers, deep nesting, odd strings) through parse, apply,
//! trigger and run on SQLite with the noop executor. None may panic.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use ork_core::engine::TriggerOptions;
use ork_core::spec;

/// xorshift64*: tiny, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "1e13",
    "1e15",
    "1e308",
    "1.7976931348623157e308",
    "18446744073709551615",
    "-9223372036854775808",
    "4294967296",
    "100000",
    "100001",
    "1000000000",
    ".inf",
    "-.inf",
    ".nan",
    "0.0000001",
    "1.5",
    "1e-320",
    "30d",
    "31d",
    "1d",
    "25h",
    "10m",
    "'500ms'",
    "'1h 30m'",
    "~",
    "'x'",
    "[]",
    "{}",
];
const STRINGS: &[&str] = &[
    "a",
    "\"\\0\"",
    "\"a\\u0000b\"",
    "'é'",
    "\"\\uFFFF\"",
    "''",
    "'  '",
    "\"\\t\"",
    "x.y-z_1",
    "'[[['",
    "\"{{{\"",
    "'#'",
    "&anchor a",
    "*anchor",
    "!!binary aGk=",
    "'%'",
    "|\n      x",
];

fn spec(rng: &mut Rng) -> String {
    let mut s = format!(
        "name: {}\n",
        rng.pick(&["wf", "wf", "w-2", "\"w\\0\"", "''"])
    );
    if rng.below(8) == 0 {
        s += &format!(
            "schedule: {}\n",
            rng.pick(&["'* * * * *'", "'bad'", "'0 0 31 2 *'"])
        );
    }
    s += "tasks:\n";
    let tasks = 1 + rng.below(4);
    for t in 0..tasks {
        s += &format!(
            "  t{t}:\n    executor: {}\n",
            rng.pick(&["noop", "noop", "noop", "mock", "bogus"])
        );
        for _ in 0..rng.below(4) {
            let n = rng.pick(NUMBERS);
            s += &match rng.below(7) {
                0 => format!("    timeout: {n}\n"),
                1 => format!("    task_count: {}\n", rng.pick(&["1", "2", "5", n])),
                2 => format!("    retries: {n}\n"),
                3 => format!(
                    "    retries: {{count: {}, backoff: {n}, max_backoff: {}}}\n",
                    rng.pick(&["1", "2", n]),
                    rng.pick(NUMBERS)
                ),
                4 => format!("    env: {{A: {}}}\n", rng.pick(STRINGS)),
                5 if t > 0 => format!("    depends_on: [t{}]\n", rng.below(tasks)),
                _ => format!("    args: [{}]\n", rng.pick(STRINGS)),
            };
        }
    }
    match rng.below(12) {
        0 => s += &format!("    env: {}\n", "[".repeat(10 + rng.below(200))),
        1 => s = format!("{}{s}", "- ".repeat(rng.below(100))),
        2 => {
            // Mutate: cut, or flip a byte.
            let at = rng.below(s.len());
            s.truncate(at);
        }
        3 => {
            let at = rng.below(s.len());
            let mut bytes = s.into_bytes();
            bytes[at] = b"{}[]:-'\"\n #&*!|>"[rng.below(16)];
            s = String::from_utf8_lossy(&bytes).into_owned();
        }
        _ => {}
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_thousand_random_specs_never_panic() {
    let db = ork_tests::db::sqlite().await;
    let engine = ork_tests::db::noop_engine(db.store.clone());
    let mut rng = Rng(0x0bad_5eed_1234_5678);
    let (mut parsed, mut ran, mut panics) = (0, 0, Vec::new());
    for i in 0..3000 {
        let yaml = spec(&mut rng);
        let params = serde_json::json!({ "n": rng.pick(&["x", "\u{0}"]), "i": i });
        let outcome = AssertUnwindSafe(async {
            let Ok(spec) = spec::parse_str(&yaml, None) else {
                return (false, false);
            };
            let Ok(_) = engine.apply(&spec, None).await else {
                return (true, false);
            };
            let Ok(t) = engine
                .trigger(&spec.name, params, TriggerOptions::default())
                .await
            else {
                return (true, false);
            };
            let _ = engine.advance(t.run.id).await;
            let _ = engine.sweep().await;
            (true, true)
        })
        .catch_unwind()
        .await;
        match outcome {
            Ok((p, r)) => {
                parsed += usize::from(p);
                ran += usize::from(r);
            }
            Err(_) => panics.push(yaml),
        }
    }
    eprintln!(
        "3000 specs: {parsed} valid, {ran} triggered and run, {} panics",
        panics.len()
    );
    assert!(
        panics.is_empty(),
        "{} panics, first:\n{}",
        panics.len(),
        panics[0]
    );
    assert!(
        parsed > 100 && ran > 30,
        "too few valid specs: {parsed} parsed, {ran} ran"
    );
}
