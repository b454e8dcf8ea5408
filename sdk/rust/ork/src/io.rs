//! The worker contract's data side: where the input comes from, where the
//! output and the error go (docs/worker-contract.md). One function each.

use serde_json::{json, Value};

use crate::run::Env;

/// The attempt's input document, `{"params", "upstream", "item"?}`, from
/// exactly one of `ORK_INPUT` (inline JSON), `ORK_INPUT_FILE` (a JSON file)
/// or `ORK_INPUT_URL` (HTTPS GET); empty when none is set (a task run by
/// hand). `ORK_ITEM` fills `item` when the document has none.
pub fn read_input(env: &Env) -> Result<Value, String> {
    let mut doc: Value = if let Some(inline) = env.get("ORK_INPUT").filter(|s| !s.is_empty()) {
        serde_json::from_str(&inline).map_err(|e| format!("ORK_INPUT is not JSON: {e}"))?
    } else if let Some(path) = env.get("ORK_INPUT_FILE").filter(|s| !s.is_empty()) {
        let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{path} is not JSON: {e}"))?
    } else if let Some(url) = env.get("ORK_INPUT_URL").filter(|s| !s.is_empty()) {
        fetch(&url)?
    } else {
        json!({})
    };
    let obj = doc
        .as_object_mut()
        .ok_or("the task input is not a JSON object")?;
    obj.entry("params").or_insert_with(|| json!({}));
    obj.entry("upstream").or_insert_with(|| json!({}));
    if !obj.contains_key("item") {
        if let Some(item) = env.get("ORK_ITEM") {
            let item =
                serde_json::from_str(&item).map_err(|e| format!("ORK_ITEM is not JSON: {e}"))?;
            obj.insert("item".into(), item);
        }
    }
    Ok(doc)
}

#[cfg(feature = "input-url")]
fn fetch(url: &str) -> Result<Value, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        let resp = client
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("cannot fetch the input: {e}"))?;
        resp.json::<Value>()
            .await
            .map_err(|e| format!("the input at ORK_INPUT_URL is not JSON: {e}"))
    })
}

#[cfg(not(feature = "input-url"))]
fn fetch(_url: &str) -> Result<Value, String> {
    Err("ORK_INPUT_URL is set but ork-sdk was built without the `input-url` feature".into())
}

/// Writes the output JSON to `$ORK_OUTPUT` (through a temporary file and a
/// rename: a partial file is never read as output), or to stdout when unset.
pub fn write_output(env: &Env, value: &Value) -> Result<(), String> {
    match env.get("ORK_OUTPUT").filter(|s| !s.is_empty()) {
        Some(path) => write_json(&path, value),
        None => {
            println!("{value}");
            Ok(())
        }
    }
}

/// Leaves `{"ork_error": {"message", "retryable"}}` at `$ORK_ERROR`, where
/// the executor or `ork worker` reads why the attempt failed; nothing when
/// `ORK_ERROR` is unset (the non-zero exit alone is the failure).
pub fn write_error(env: &Env, message: &str, retryable: bool) -> Result<(), String> {
    match env.get("ORK_ERROR").filter(|s| !s.is_empty()) {
        Some(path) => write_json(
            &path,
            &json!({"ork_error": {"message": message, "retryable": retryable}}),
        ),
        None => Ok(()),
    }
}

fn write_json(path: &str, value: &Value) -> Result<(), String> {
    let tmp = format!("{path}.tmp-{}", std::process::id());
    std::fs::write(&tmp, value.to_string())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write {path}: {e}")
        })
}
