//! `score`: each country's share of the spend, from `transform`'s output.
//! A complete task program with the Rust SDK; `score --ork-schema` prints
//! its input and output JSON Schema.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A country of `transform`'s output (`CountrySummary` in ../tasks/models.py).
#[derive(Deserialize, JsonSchema)]
struct CountrySummary {
    country: String,
    spend: f64,
}

#[derive(Deserialize, JsonSchema)]
struct Input {
    /// `transform.countries`, by the `inputs:` mapping of etl.yaml.
    countries: Vec<CountrySummary>,
}

#[derive(Serialize, JsonSchema)]
struct Share {
    country: String,
    share: f64,
}

#[derive(Serialize, JsonSchema)]
struct Output {
    top_country: String,
    shares: Vec<Share>,
}

#[ork::task]
fn main(input: Input) -> ork::Result<Output> {
    let total: f64 = input.countries.iter().map(|c| c.spend).sum();
    if total <= 0.0 {
        return Err(ork::Error::fail("no spend to share out"));
    }
    let mut shares: Vec<Share> = input
        .countries
        .iter()
        .map(|c| Share {
            country: c.country.clone(),
            share: (c.spend / total * 1000.0).round() / 1000.0,
        })
        .collect();
    shares.sort_by(|a, b| b.share.total_cmp(&a.share));
    let ctx = ork::context();
    eprintln!(
        "scored {} countries (run {}, attempt {})",
        shares.len(),
        ctx.run_id,
        ctx.attempt
    );
    Ok(Output {
        top_country: shares[0].country.clone(),
        shares,
    })
}
