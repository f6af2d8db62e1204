//! Plugin runtime costs, measured on the real hostile plugin:
//! - load, cold: read manifest + component, compile, pre-instantiate (no disk cache);
//! - load, cached: the same with the compiled component read from the disk cache (target < 5 ms);
//! - instantiate + call `info`: a fresh sandboxed instance per call (target < 50 µs);
//! - call `info` on the plugin's warm instance (what a second call costs by default).
//!
//! Run with `cargo bench -p imageai-tests --bench runtime`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use imageai_core::plugin::{Runtime, RuntimeOptions};
use imageai_tests::plugins::plugin_dir;

fn runtime(cache_dir: Option<std::path::PathBuf>) -> Runtime {
    runtime_with(RuntimeOptions {
        cache_dir,
        ..RuntimeOptions::default()
    })
}

fn runtime_with(options: RuntimeOptions) -> Runtime {
    Runtime::new(options).unwrap_or_else(|err| panic!("could not start the runtime: {err}"))
}

fn load(c: &mut Criterion) {
    let dir = plugin_dir("imageai-plugin-hostile");
    let mut group = c.benchmark_group("plugin load");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));

    let cold = runtime(None);
    group.bench_function("cold (compile, no cache)", |b| {
        b.iter(|| black_box(cold.load(&dir).unwrap_or_else(|err| panic!("{err}"))))
    });

    let cache = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let cached = runtime(Some(cache.path().to_path_buf()));
    let first = cached.load(&dir).unwrap_or_else(|err| panic!("{err}"));
    assert!(!first.compiled_from_cache(), "the first load compiles");
    group
        .sample_size(50)
        .measurement_time(Duration::from_secs(5));
    group.bench_function("cached (deserialize from disk)", |b| {
        b.iter(|| {
            let provider = cached.load(&dir).unwrap_or_else(|err| panic!("{err}"));
            assert!(provider.compiled_from_cache());
            black_box(provider)
        })
    });
    group.finish();
}

fn call(c: &mut Criterion) {
    let dir = plugin_dir("imageai-plugin-hostile");
    let fresh = runtime_with(RuntimeOptions {
        reuse_instances: false,
        ..RuntimeOptions::default()
    })
    .load(&dir)
    .unwrap_or_else(|err| panic!("{err}"));
    c.bench_function("instantiate + call info", |b| {
        b.iter(|| black_box(fresh.query_info().unwrap_or_else(|err| panic!("{err}"))))
    });
    let warm = runtime(None)
        .load(&dir)
        .unwrap_or_else(|err| panic!("{err}"));
    c.bench_function("call info on the warm instance", |b| {
        b.iter(|| black_box(warm.query_info().unwrap_or_else(|err| panic!("{err}"))))
    });
}

criterion_group!(benches, load, call);
criterion_main!(benches);
