//! generate, chat, translate, ask, info.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::sync::Mutex;

use lamina::{CancelHandle, Error, Generation, Session, StopReason};

use crate::options::{ModelOptions, SamplingOptions};

/// The generation Ctrl-C should stop; None while waiting for input (Ctrl-C then exits).
static ACTIVE: Mutex<Option<CancelHandle>> = Mutex::new(None);

fn install_ctrlc() {
    let _ = ctrlc::set_handler(|| {
        let active = ACTIVE.lock().ok().and_then(|a| a.clone());
        match active {
            Some(handle) => handle.cancel(),
            None => std::process::exit(130),
        }
    });
}

/// Run `f` with Ctrl-C bound to cancelling `session`'s generation.
fn cancellable<T>(session: &mut Session, f: impl FnOnce(&mut Session) -> T) -> T {
    if let Ok(mut a) = ACTIVE.lock() {
        *a = Some(session.cancel_handle());
    }
    let out = f(session);
    if let Ok(mut a) = ACTIVE.lock() {
        *a = None;
    }
    out
}

fn stream_to_stdout(piece: &str) -> bool {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) ends generation quietly.
    out.write_all(piece.as_bytes()).and_then(|_| out.flush()).is_ok()
}

fn report(g: &Generation) {
    if matches!(g.stop_reason, StopReason::Cancelled) {
        eprintln!("[cancelled]");
    }
}

pub fn generate(model: &ModelOptions, sampling: &SamplingOptions, prompt: &str) -> Result<(), Error> {
    install_ctrlc();
    let sampling = sampling.to_sampling()?;
    sampling.validate()?;
    let (_model, mut session) = model.open()?;
    let g = cancellable(&mut session, |s| s.generate(prompt, &sampling, stream_to_stdout))?;
    println!();
    report(&g);
    if model.verbose {
        eprintln!(
            "prompt {} tokens in {:.1} ms, {} tokens generated in {:.1} ms ({:?})",
            g.prompt_tokens,
            g.prompt_time.as_secs_f64() * 1e3,
            g.generated_tokens,
            g.generation_time.as_secs_f64() * 1e3,
            g.stop_reason
        );
    }
    Ok(())
}

pub fn chat(model: &ModelOptions, sampling: &SamplingOptions, system: Option<&str>) -> Result<(), Error> {
    install_ctrlc();
    let sampling = sampling.to_sampling()?;
    sampling.validate()?;
    let (_model, mut session) = model.open()?;
    session.set_system_prompt(system);
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!("lamina chat: type a message; /reset clears the conversation, /exit quits.");
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!("> ");
            let _ = std::io::stderr().flush();
        }
        let Some(line) = lines.next() else { break };
        let line = line.map_err(|e| Error::Io { path: "<stdin>".into(), source: e })?;
        let message = line.trim();
        match message {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                session.reset();
                session.set_system_prompt(system);
                eprintln!("[conversation cleared]");
                continue;
            }
            _ => {}
        }
        let g = cancellable(&mut session, |s| s.chat(message, &sampling, stream_to_stdout))?;
        println!();
        report(&g);
        if model.verbose {
            eprintln!("[{} prompt tokens, {} reused from the cache, {} generated]", g.prompt_tokens, g.reused_tokens, g.generated_tokens);
        }
    }
    Ok(())
}

pub fn translate(model: &ModelOptions, from: &str, to: &str, text: Option<&str>) -> Result<(), Error> {
    let text = match text {
        Some(t) => t.to_string(),
        None => {
            let mut buf = String::new();
            std::io::stdin().read_to_string(&mut buf).map_err(|e| Error::Io { path: "<stdin>".into(), source: e })?;
            buf
        }
    };
    // Check the languages before paying for a model load.
    for lang in [from, to] {
        if lamina::tasks::language_name(lang).is_none() {
            return Err(Error::UnknownLanguage(lang.to_string()));
        }
    }
    let (_model, mut session) = model.open()?;
    println!("{}", lamina::tasks::translate(&mut session, &text, from, to, &Default::default())?);
    Ok(())
}

pub fn ask(model: &ModelOptions, question: &str, context: Option<&str>) -> Result<(), Error> {
    let context = match context {
        Some(c) if c.starts_with('@') => {
            let path = std::path::PathBuf::from(&c[1..]);
            Some(std::fs::read_to_string(&path).map_err(|source| Error::Io { path, source })?)
        }
        Some(c) => Some(c.to_string()),
        None => None,
    };
    let (_model, mut session) = model.open()?;
    println!("{}", lamina::tasks::answer(&mut session, question, context.as_deref(), &Default::default())?);
    Ok(())
}

/// Print the compute backends (loaded, skipped) and their devices.
fn print_backends() {
    let report = lamina::engine::backend_report();
    println!("backends      {}", if report.dynamic { "loaded at run time" } else { "compiled in" });
    for b in &report.loaded {
        match &b.path {
            Some(path) => println!("  {:<11} {}", b.name, path.display()),
            None => println!("  {}", b.name),
        }
    }
    if report.dynamic {
        let searched: Vec<String> = report.searched.iter().map(|p| p.display().to_string()).collect();
        println!("  searched    {}", searched.join(", "));
    }
    for s in &report.skipped {
        println!("  skipped     {}: {}", s.path.display(), s.reason);
    }
    println!("devices:");
    for d in lamina::engine::devices() {
        let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
        println!(
            "  {} ({}): {} [{:?}, {:.0} MiB free of {:.0} MiB]",
            d.name,
            d.backend,
            d.description,
            d.kind,
            mib(d.memory_free),
            mib(d.memory_total)
        );
    }
}

pub fn info(model_opts: &ModelOptions, all: bool) -> Result<(), Error> {
    model_opts.install_logging();
    model_opts.load_backends()?;
    println!("lamina {}", lamina::VERSION);
    // Backends first: they are the answer to "why does the model not load" too.
    print_backends();
    let model = model_opts.load()?;
    let adapters = model_opts.load_adapters(&model)?;
    let info = model.info();
    for (a, scale) in &adapters {
        println!(
            "adapter       {} (rank {}, alpha {}, scale {scale}, {} tensors)",
            a.path().display(),
            a.rank(),
            a.alpha(),
            a.targets().len()
        );
    }
    println!("model         {}", info.path.display());
    if let Some(name) = &info.name {
        println!("name          {name}");
    }
    println!("architecture  {}", info.architecture);
    println!("parameters    {:.1} M", info.n_params as f64 / 1e6);
    println!("size          {:.1} MiB", info.size_bytes as f64 / (1024.0 * 1024.0));
    println!("layers        {}", info.n_layer);
    println!("width         {}", info.n_embd);
    println!("heads         {} ({} KV)", info.n_head, info.n_head_kv);
    println!("vocabulary    {}", info.n_vocab);
    println!("train context {}", info.n_ctx_train);
    println!("chat template {}", if info.has_chat_template { "yes (tokenizer.chat_template)" } else { "no (llama.cpp's ChatML fallback)" });
    println!("load time     {:.1} ms", model.load_time().as_secs_f64() * 1e3);
    if model_opts.gpu_layers > 0 && info.gpu_layers == 0 {
        println!("gpu layers    0 of {} (no GPU device is loaded: running on the CPU)", info.n_layer + 1);
    } else {
        println!("gpu layers    {} of {}", info.gpu_layers, info.n_layer + 1);
    }
    // The native engine (training, native scoring) picks its own kernels from the CPU.
    println!("native kernel {}", lamina::native::model::describe_kernels(lamina::native::Precision::Auto));
    if all {
        println!("metadata:");
        for (key, value) in model.metadata() {
            let value: String = if value.chars().count() > 100 { value.chars().take(100).chain("...".chars()).collect() } else { value };
            println!("  {key} = {}", value.replace('\n', "\\n"));
        }
    }
    Ok(())
}
