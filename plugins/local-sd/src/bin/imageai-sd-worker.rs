//! `imageai-sd-worker`: the local Stable Diffusion provider process. The host spawns it and
//! speaks line-delimited JSON on stdin/stdout (see `imageai_local_sd::worker::protocol`).
//! `--list-devices` prints the GPU adapters and exits.

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list-devices") {
        let mut out = std::io::stdout().lock();
        let adapters = imageai_local_sd::device::list_adapters();
        if adapters.is_empty() {
            let _ = writeln!(out, "no GPU adapter found; the engine will run on the CPU");
        }
        for a in adapters {
            let _ = writeln!(
                out,
                "{}: {} ({}, {}, {})",
                a.index, a.name, a.kind, a.backend, a.driver
            );
        }
        return;
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        let _ = writeln!(
            std::io::stdout(),
            "imageai-sd-worker: speaks line-delimited JSON on stdin/stdout; started by ImageAI.\n  --list-devices  list GPU adapters"
        );
        return;
    }
    let stdin = std::io::BufReader::new(std::io::stdin());
    imageai_local_sd::worker::server::serve(stdin, std::io::stdout());
}
