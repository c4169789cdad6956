//! What the server serves under which name: the loaded model, under its file stem, and each
//! LoRA adapter of `--lora NAME=PATH[:SCALE]`, under NAME (or `<model-id>:NAME`). The `model`
//! field of a request picks one; a name that is neither is a 404.

use std::path::Path;

use lamina::{Adapter, Error, Model};

use super::error::ApiError;
use crate::options::parse_lora;

/// One adapter and the name requests use for it.
#[derive(Debug, Clone)]
pub struct NamedAdapter {
    pub name: String,
    pub adapter: Adapter,
    pub scale: f32,
}

/// The names a request may give in `model`.
#[derive(Debug, Clone)]
pub struct Models {
    /// The model's id: its file name without the extension.
    pub id: String,
    pub adapters: Vec<NamedAdapter>,
}

/// Which weights a request runs on: the base model (`None`) or one of [`Models::adapters`].
pub type AdapterChoice = Option<usize>;

/// A file's name without its extension, for ids (`SmolLM2-135M-Instruct.Q4_1.gguf` gives
/// `SmolLM2-135M-Instruct.Q4_1`).
fn stem(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

/// Split one `--lora` argument: `NAME=PATH[:SCALE]`, or `PATH[:SCALE]`, named after the
/// file's stem.
pub fn parse_named_lora(arg: &str) -> Result<(String, std::path::PathBuf, f32), Error> {
    let (name, rest) = match arg.split_once('=') {
        Some((name, rest)) => (Some(name.trim().to_string()), rest),
        None => (None, arg),
    };
    let (path, scale) = parse_lora(rest)?;
    let name = name.unwrap_or_else(|| stem(&path));
    if name.is_empty() {
        return Err(Error::InvalidArgument { name: "lora", reason: format!("`{arg}`: the adapter's name is empty (NAME=PATH)") });
    }
    if name.chars().any(char::is_whitespace) {
        return Err(Error::InvalidArgument { name: "lora", reason: format!("`{arg}`: the adapter's name `{name}` contains whitespace") });
    }
    Ok((name, path, scale))
}

impl Models {
    /// Load the adapters of `lora_args` (each `NAME=PATH[:SCALE]`) into `model`. Names must be
    /// distinct and differ from the model's id.
    pub fn load(model: &Model, lora_args: &[String]) -> Result<Models, Error> {
        let id = stem(model.path());
        let mut adapters: Vec<NamedAdapter> = Vec::new();
        for arg in lora_args {
            let (name, path, scale) = parse_named_lora(arg)?;
            if name == id || adapters.iter().any(|a| a.name == name) {
                return Err(Error::InvalidArgument { name: "lora", reason: format!("`{arg}`: the name `{name}` is already taken") });
            }
            let adapter = model.load_adapter(&path)?;
            adapters.push(NamedAdapter { name, adapter, scale });
        }
        Ok(Models { id, adapters })
    }

    /// Every name a request may use, the model's first (for /v1/models and error messages).
    pub fn names(&self) -> Vec<String> {
        std::iter::once(self.id.clone()).chain(self.adapters.iter().map(|a| a.name.clone())).collect()
    }

    /// The weights `name` stands for: the model's id, an adapter's NAME, or `<model-id>:NAME`.
    /// No name means the base model.
    pub fn resolve(&self, name: Option<&str>) -> Result<AdapterChoice, ApiError> {
        let Some(name) = name else { return Ok(None) };
        if name == self.id {
            return Ok(None);
        }
        let short = name.strip_prefix(self.id.as_str()).and_then(|rest| rest.strip_prefix(':')).unwrap_or(name);
        match self.adapters.iter().position(|a| a.name == short) {
            Some(i) => Ok(Some(i)),
            None => Err(ApiError::unknown_model(name, &self.names())),
        }
    }

    /// The adapter set [`Session::set_adapters`](lamina::Session::set_adapters) takes for a
    /// choice (empty for the base model).
    pub fn adapter_set(&self, choice: AdapterChoice) -> Vec<(Adapter, f32)> {
        match choice.and_then(|i| self.adapters.get(i)) {
            Some(a) => vec![(a.adapter.clone(), a.scale)],
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lora_arguments_name_their_adapter() {
        assert_eq!(parse_named_lora("facts=/tmp/a.gguf").unwrap(), ("facts".into(), "/tmp/a.gguf".into(), 1.0));
        assert_eq!(parse_named_lora("facts=/tmp/a.gguf:0.5").unwrap(), ("facts".into(), "/tmp/a.gguf".into(), 0.5));
        assert_eq!(parse_named_lora("/tmp/b.gguf").unwrap(), ("b".into(), "/tmp/b.gguf".into(), 1.0));
        assert!(parse_named_lora("=/tmp/a.gguf").is_err());
        assert!(parse_named_lora("a b=/tmp/a.gguf").is_err());
    }
}
