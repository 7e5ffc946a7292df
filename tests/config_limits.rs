//! What the config loader costs on inputs no one should write: a file as large as it reads, a
//! device that never ends, nesting thousands of levels deep, text that is not UTF-8. Each is
//! bounded, and the memory test counts every byte the loader allocates.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redplug_runtime::config;

/// The system allocator, counting the bytes live now and the most live since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the counters are only
// arithmetic on the sizes it was asked for.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract, which we pass on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The tests of this file one at a time, so that the counters see one loader only.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `f` and returns its result with the most bytes it had allocated at once beyond what
/// was live when it started.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let result = f();
    (result, PEAK.load(Ordering::Relaxed).saturating_sub(before))
}

const MIB: usize = 1024 * 1024;

/// One endpoint as a large gateway writes it: redplug reads its path, method, backend and
/// chain, and skips what belongs to other namespaces (`padding` bytes of it).
fn endpoint(index: usize, padding: usize) -> String {
    format!(
        r#"{{"endpoint": "/v1/items/{index}", "method": "GET", "extra_config": {{"plugin/redplug": {{"name": ["rate_limit"], "rate_limit": {{"limit": {index}}}}}, "security/cors": {{"allow_origins": ["{}"]}}}}, "backend": [{{"host": ["http://10.0.0.{}:8080"], "url_pattern": "/items/{index}", "extra_config": {{"qos/ratelimit/proxy": {{"max_rate": 10, "capacity": 10}}}}}}]}}"#,
        "x".repeat(padding),
        index % 250
    )
}

/// A config of about `target` bytes: a real `extra_config.redis`, and `count` endpoints
/// padded to fill the rest.
fn large_config(target: usize, count: usize) -> String {
    let mut text = String::with_capacity(target + 4096);
    text.push_str(
        r#"{"version": 3, "extra_config": {"redis": {"connection_pools": [{"name": "cache", "address": "localhost:6379"}]}}, "endpoints": ["#,
    );
    let padding = (target / count).saturating_sub(endpoint(0, 0).len());
    for index in 0..count {
        if index > 0 {
            text.push(',');
        }
        text.push_str(&endpoint(index, padding));
    }
    text.push_str("]}");
    text
}

#[test]
fn a_large_config_costs_little_beyond_what_it_keeps() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let text = large_config(30 * MIB, config::MAX_ENDPOINTS);
    let before = LIVE.load(Ordering::Relaxed);
    let started = Instant::now();
    let (loaded, peak) = peak_of(|| config::parse(&text));
    let took = started.elapsed();
    let config = loaded.unwrap_or_else(|e| panic!("{e}"));
    let kept = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    println!(
        "a {} MiB config with {} endpoints loaded in {took:?}, allocating at most {} KiB, of \
         which the config keeps {} KiB",
        text.len() / MIB,
        config.endpoints.len(),
        peak / 1024,
        kept / 1024
    );
    assert_eq!(config.redis.connection_pools.len(), 1);
    assert_eq!(config.endpoints.len(), config::MAX_ENDPOINTS);
    // What is skipped costs nothing: beyond what the config keeps, loading allocates less
    // than a mebibyte however large the file. serde_json's `Value` for the same file takes
    // several times the text.
    assert!(
        peak < kept + MIB,
        "loading allocated {} KiB beyond the {} KiB it keeps",
        (peak - kept) / 1024,
        kept / 1024
    );
    // What is kept is a few kibibytes per endpoint (paths, backend, chain and settings).
    assert!(
        kept < config::MAX_ENDPOINTS * 4 * 1024,
        "the config keeps {} KiB",
        kept / 1024
    );
}

#[test]
fn more_endpoints_than_the_limit_are_refused_with_the_limit() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let text = large_config(MIB, config::MAX_ENDPOINTS + 1);
    let errors = config::parse(&text).expect_err("over the limit");
    assert_eq!(errors.errors().len(), 1, "{errors}");
    assert_eq!(errors.errors()[0].path, "endpoints");
    assert!(
        errors
            .to_string()
            .contains("lists 10001 endpoints, more than the 10000"),
        "{errors}"
    );
}

#[test]
fn a_device_that_never_ends_is_refused_at_the_size_limit() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let (loaded, peak) = peak_of(|| config::load(std::path::Path::new("/dev/zero")));
    let errors = loaded.expect_err("/dev/zero is no config");
    let took = started.elapsed();
    println!(
        "/dev/zero refused after {took:?}, allocating at most {} MiB: {errors}",
        peak / MIB
    );
    assert!(
        errors.to_string().contains("larger than 32 MiB"),
        "{errors}"
    );
    // Reading doubles its buffer as it goes: past the limit, one buffer of twice the limit is
    // being filled from the one before.
    assert!(peak <= 3 * config::MAX_FILE_BYTES as usize + MIB, "{peak}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn a_file_over_the_limit_is_refused_with_the_limit() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let text = large_config(config::MAX_FILE_BYTES as usize + 1, 1000);
    file.write_all(text.as_bytes()).unwrap();
    let errors = config::load(file.path()).expect_err("over the limit");
    assert_eq!(errors.errors().len(), 1);
    assert!(
        errors.to_string().contains("larger than 32 MiB"),
        "{errors}"
    );
}

#[test]
fn the_gateway_s_own_sections_may_nest_deeper_than_ours() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let deep = "[".repeat(10_000) + &"]".repeat(10_000);
    let text = format!(
        r#"{{"async_agent": {deep}, "endpoints": [{{"endpoint": "/a", "extra_config": {{"other/namespace": {deep}}}, "backend": [{{"host": ["http://b"], "url_pattern": "/a", "sd": {deep}}}]}}], "extra_config": {{"redis": {{}}}}}}"#
    );
    let config = config::parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.endpoints.len(), 1);
}

#[test]
fn text_that_is_not_utf8_is_refused_with_its_position() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(b"{\n  \"version\": 3,\n  \"name\": \"caf\xe9\"\n}\n")
        .unwrap();
    let errors = config::load(file.path()).expect_err("latin-1 is not UTF-8");
    let message = errors.errors()[0].message.clone();
    println!("{message}");
    assert!(
        message.contains("byte 32 (line 3, column 15)") && message.contains("UTF-8"),
        "{message}"
    );
}
