//! Reading specs from YAML text, a file, or a directory of files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{validate, SpecError, WorkflowSpec};
use crate::limits::{yaml_depth, MAX_SPEC_BYTES, MAX_SPEC_DEPTH};

/// Parses and validates one workflow. `file` only names the source in
/// errors and, when given, sets `base_dir` to its parent so that `file:`
/// paths of `python` tasks are resolved (and checked) against it.
pub fn parse_str(src: &str, file: Option<&Path>) -> Result<WorkflowSpec, SpecError> {
    // Checked before parsing: the parser's time grows with size and
    // quadratically with depth.
    if src.len() > MAX_SPEC_BYTES {
        let msg = format!(
            "the file is {} bytes, the limit is 1 MiB ({MAX_SPEC_BYTES} bytes)",
            src.len()
        );
        return Err(SpecError::new(msg).in_file(file));
    }
    if yaml_depth(src, MAX_SPEC_DEPTH) > MAX_SPEC_DEPTH {
        let msg = format!("the YAML is nested more than {MAX_SPEC_DEPTH} levels deep");
        return Err(SpecError::new(msg).in_file(file));
    }
    let mut spec: WorkflowSpec =
        serde_norway::from_str(src).map_err(|e| yaml_error(&e).in_file(file))?;
    if let Some(file) = file {
        spec.base_dir = Some(file.parent().unwrap_or(Path::new("")).to_path_buf());
    }
    validate::validate(&spec, src).map_err(|e| e.in_file(file))?;
    Ok(spec)
}

/// Reads, parses and validates one workflow file.
pub fn load_file(path: &Path) -> Result<WorkflowSpec, SpecError> {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if size > MAX_SPEC_BYTES as u64 {
        let msg = format!("the file is {size} bytes, the limit is 1 MiB ({MAX_SPEC_BYTES} bytes)");
        return Err(SpecError::new(msg).in_file(Some(path)));
    }
    let src = std::fs::read_to_string(path)
        .map_err(|e| SpecError::new(format!("cannot read file: {e}")).in_file(Some(path)))?;
    parse_str(&src, Some(path))
}

/// Loads every `*.yaml` / `*.yml` file directly in `dir`, in file-name
/// order. Two files declaring the same workflow name is an error, since one
/// would silently replace the other when applied. An empty directory gives
/// an empty list.
pub fn load_dir(dir: &Path) -> Result<Vec<WorkflowSpec>, SpecError> {
    Ok(load_dir_files(dir)?.into_iter().map(|(_, s)| s).collect())
}

/// [`load_dir`], each spec with the file it came from.
pub fn load_dir_files(dir: &Path) -> Result<Vec<(PathBuf, WorkflowSpec)>, SpecError> {
    let io_err = |e: std::io::Error| {
        SpecError::new(format!("cannot read directory: {e}")).in_file(Some(dir))
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let path = entry.map_err(io_err)?.path();
        let yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        if yaml && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut specs = Vec::with_capacity(files.len());
    for file in files {
        let spec = load_file(&file)?;
        if let Some(first) = by_name.insert(spec.name.clone(), file.clone()) {
            return Err(SpecError::new(format!(
                "workflow {:?} is also declared in {}",
                spec.name,
                first.display()
            ))
            .in_file(Some(&file)));
        }
        specs.push((file, spec));
    }
    Ok(specs)
}

/// A syntax or type error, with the line moved out of the message (where
/// serde_norway puts it as " at line L column C") into `SpecError::line`.
fn yaml_error(e: &serde_norway::Error) -> SpecError {
    let mut message = e.to_string();
    let loc = e.location();
    if let Some(loc) = &loc {
        let suffix = format!(" at line {} column {}", loc.line(), loc.column());
        message = message.replacen(&suffix, "", 1);
    }
    SpecError::new(message).at(loc.map(|l| l.line()))
}
