//! Options shared by the subcommands.

use std::path::PathBuf;

use clap::Args;
use lamina::{Adapter, Error, Model, ModelParams, OutputFormat, Sampling, Session, SessionParams};

/// The CLI spelling of [`lamina::FlashAttention`].
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashAttn {
    Auto,
    On,
    Off,
}

impl From<FlashAttn> for lamina::FlashAttention {
    fn from(f: FlashAttn) -> Self {
        match f {
            FlashAttn::Auto => lamina::FlashAttention::Auto,
            FlashAttn::On => lamina::FlashAttention::On,
            FlashAttn::Off => lamina::FlashAttention::Off,
        }
    }
}

/// Which model, and how to run it.
#[derive(Args, Debug, Clone)]
pub struct ModelOptions {
    /// GGUF model file [default: the cached SmolLM2-135M-Instruct Q4_1, or $LAMINA_MODEL]
    #[arg(long, short)]
    pub model: Option<PathBuf>,
    /// CPU threads (0 = all cores).
    #[arg(long, short = 't', default_value_t = 0)]
    pub threads: u32,
    /// Layers to offload to the GPU (0 = CPU only; 99 = all of a small model). Needs a GPU
    /// backend: compiled in (`cuda`, `vulkan`, `metal` features) or loaded at run time.
    #[arg(long, short = 'g', default_value_t = 0)]
    pub gpu_layers: u32,
    /// Where to look for backend libraries (libggml-cuda.so, libggml-cpu-*.so, ...), a
    /// directory or a file, searched before $LAMINA_BACKEND_PATH and lamina's own directory.
    /// Repeatable. Builds with dynamic backends only.
    #[arg(long = "backend-path", value_name = "PATH")]
    pub backend_path: Vec<PathBuf>,
    /// FlashAttention: auto (where every device supports it), on, off.
    #[arg(long = "flash-attn", value_enum, default_value_t = FlashAttn::Auto)]
    pub flash_attn: FlashAttn,
    /// Context window in tokens (0 = min(4096, the model's)).
    #[arg(long, default_value_t = 0)]
    pub ctx: u32,
    /// Show llama.cpp's log on stderr.
    #[arg(long, short)]
    pub verbose: bool,
    /// Apply a LoRA adapter (GGUF adapter file or PEFT directory), optionally with a scale
    /// (default 1). Repeatable: several adapters are applied together.
    #[arg(long = "lora", value_name = "PATH[:SCALE]")]
    pub lora: Vec<String>,
}

/// Split `PATH[:SCALE]`: the part after the last `:` is a scale when it parses as a number,
/// otherwise the whole argument is the path (scale 1).
pub fn parse_lora(arg: &str) -> Result<(PathBuf, f32), Error> {
    if let Some((path, scale)) = arg.rsplit_once(':') {
        if let Ok(value) = scale.trim().parse::<f32>() {
            if !value.is_finite() {
                return Err(Error::InvalidArgument { name: "lora", reason: format!("`{arg}`: the scale must be finite") });
            }
            if path.is_empty() {
                return Err(Error::InvalidArgument { name: "lora", reason: format!("`{arg}`: missing the adapter path") });
            }
            return Ok((PathBuf::from(path), value));
        }
    }
    Ok((PathBuf::from(arg), 1.0))
}

impl ModelOptions {
    pub fn model_path(&self) -> PathBuf {
        self.model.clone().unwrap_or_else(lamina::paths::default_model_path)
    }

    pub fn install_logging(&self) {
        if self.verbose {
            lamina::engine::set_log_sink(Some(Box::new(|_, line| eprintln!("{line}"))), lamina::engine::LogLevel::Info);
        }
    }

    /// Load the backends named with --backend-path (before the first model).
    pub fn load_backends(&self) -> Result<(), Error> {
        for path in &self.backend_path {
            lamina::engine::load_backends(path)?;
        }
        Ok(())
    }

    pub fn load(&self) -> Result<Model, Error> {
        self.install_logging();
        self.load_backends()?;
        let path = self.model_path();
        let params = ModelParams { n_gpu_layers: self.gpu_layers, ..ModelParams::default() };
        Model::load(&path, &params).map_err(|e| match e {
            Error::ModelNotFound { .. } if self.model.is_none() => Error::InvalidArgument {
                name: "model",
                reason: format!("the default model is not in the cache ({}); run scripts/fetch-model.sh or pass --model", path.display()),
            },
            other => other,
        })
    }

    pub fn session_params(&self) -> SessionParams {
        SessionParams { n_ctx: self.ctx, n_threads: self.threads, flash_attention: self.flash_attn.into(), ..SessionParams::default() }
    }

    pub fn open(&self) -> Result<(Model, Session), Error> {
        let model = self.load()?;
        let mut session = Session::new(&model, &self.session_params())?;
        session.set_adapters(&self.load_adapters(&model)?)?;
        Ok((model, session))
    }

    /// The `--lora` adapters loaded into `model`, with their scales (empty without `--lora`).
    pub fn load_adapters(&self, model: &Model) -> Result<Vec<(Adapter, f32)>, Error> {
        self.lora
            .iter()
            .map(|arg| {
                let (path, scale) = parse_lora(arg)?;
                Ok((model.load_adapter(&path)?, scale))
            })
            .collect()
    }
}

/// Sampling flags.
#[derive(Args, Debug, Clone)]
pub struct SamplingOptions {
    /// Maximum tokens to generate.
    #[arg(long, short = 'n', default_value_t = 256)]
    pub max_tokens: u32,
    /// Temperature; 0 = greedy (deterministic).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub temperature: f32,
    /// Top-k (0 = off).
    #[arg(long, default_value_t = 40, allow_negative_numbers = true)]
    pub top_k: i32,
    /// Top-p (1 = off).
    #[arg(long, default_value_t = 0.95, allow_negative_numbers = true)]
    pub top_p: f32,
    /// Min-p (0 = off).
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true)]
    pub min_p: f32,
    /// Repeat penalty (1 = off).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub repeat_penalty: f32,
    /// Random seed for sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u32,
    /// Stop before this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Structured output: the text is one JSON value that this JSON schema (a file) accepts.
    #[arg(long, value_name = "FILE", conflicts_with = "grammar")]
    pub json_schema: Option<PathBuf>,
    /// Structured output: the text follows this GBNF grammar (a file; start rule `root`).
    #[arg(long, value_name = "FILE")]
    pub grammar: Option<PathBuf>,
}

impl SamplingOptions {
    /// The sampling these flags ask for; reads the `--json-schema` or `--grammar` file.
    pub fn to_sampling(&self) -> Result<Sampling, Error> {
        let read = |path: &PathBuf| std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.clone(), source });
        let format = match (&self.json_schema, &self.grammar) {
            (Some(path), _) => Some(OutputFormat::JsonSchema(read(path)?)),
            (None, Some(path)) => Some(OutputFormat::Grammar(read(path)?)),
            (None, None) => None,
        };
        Ok(Sampling {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: 64,
            seed: self.seed,
            max_tokens: self.max_tokens,
            stop: self.stop.clone(),
            format,
        })
    }
}
