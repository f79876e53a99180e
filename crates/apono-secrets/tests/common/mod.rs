//! Helpers shared by this crate's integration tests: canaries and the no-leak assertions.
//!
//! Any backend's test can use them: put [`canary()`] into a secret, drive failure paths,
//! and pass every error, log buffer and panic message to [`assert_no_leak`].
#![allow(dead_code, unreachable_pub)]

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// A fresh random canary such as `canary-3f9a…`, unlikely to occur anywhere by chance.
pub fn canary() -> String {
    let mut text = String::from("canary-");
    for _ in 0..2 {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(std::process::id().into());
        text.push_str(&format!("{:016x}", hasher.finish()));
    }
    text
}

/// The forms in which a value could escape: as is, base64 (standard, URL-safe, padded or
/// not, and at the three alignment offsets), hex, percent-encoded, JSON-escaped.
pub fn leak_forms(secret: &str) -> Vec<String> {
    use data_encoding::{BASE64, BASE64_NOPAD, BASE64URL, BASE64URL_NOPAD, HEXLOWER, HEXUPPER};
    let mut forms = vec![secret.to_owned()];
    for offset in 0..3 {
        let bytes = format!("{}{secret}", "x".repeat(offset));
        for encoding in [&BASE64, &BASE64_NOPAD, &BASE64URL, &BASE64URL_NOPAD] {
            let encoded = encoding.encode(bytes.as_bytes());
            // Drop the chars influenced by the prefix and the (possibly partial) tail.
            let skip = (offset * 4).div_ceil(3) + 1;
            let inner: String = encoded.chars().skip(skip).collect();
            let inner: String = inner.chars().take(inner.len().saturating_sub(4)).collect();
            if inner.len() >= 8 {
                forms.push(inner);
            }
        }
    }
    forms.push(HEXLOWER.encode(secret.as_bytes()));
    forms.push(HEXUPPER.encode(secret.as_bytes()));
    let percent: String = secret
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    forms.push(percent);
    forms.push(serde_json::to_string(secret).unwrap_or_default());
    forms.sort();
    forms.dedup();
    forms
}

/// Fails the test when any form of `secret` appears in `text` (compared case-insensitively
/// for the hex forms).
#[track_caller]
pub fn assert_no_leak(secret: &str, text: &str, context: &str) {
    for form in leak_forms(secret) {
        assert!(
            !text.contains(&form) && !text.to_lowercase().contains(&form.to_lowercase()),
            "{context}: the secret leaked (as {form:?}) into:\n{text}"
        );
    }
}

/// `Display` and `Debug` of an error and of every error in its `source` chain, and its `{:#}`
/// through anyhow.
pub fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = format!("{error}\n{error:?}\n");
    let mut next = error.source();
    while let Some(cause) = next {
        text.push_str(&format!("{cause}\n{cause:?}\n"));
        next = cause.source();
    }
    text
}

/// A buffer that a `tracing` subscriber writes into.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs, for the current thread, a subscriber that records every event and span field at
/// TRACE level into the returned buffer. Use it with a current-thread runtime
/// (`#[tokio::test]`), so that every task logs on this thread.
pub fn capture_logs() -> (LogBuffer, tracing::subscriber::DefaultGuard) {
    // `tracing` caches each callsite's interest for the whole process. While at most one
    // dispatcher exists it asks the *registering* thread's default, so a sibling test whose
    // thread has no subscriber could reach a callsite first, cache `never`, and silence it in
    // this capture (which would then pass the no-leak checks vacuously or miss expected lines).
    // A do-nothing global default that wants every callsite keeps them all live.
    static ANCHOR: std::sync::Once = std::sync::Once::new();
    ANCHOR.call_once(|| {
        let _ = tracing::subscriber::set_global_default(tracing_subscriber::registry());
    });
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    (buffer, guard)
}

/// Runs `f`, catching a panic, and returns the panic's message (if it panicked).
pub fn panic_message(f: impl FnOnce() + std::panic::UnwindSafe) -> Option<String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(f);
    std::panic::set_hook(hook);
    result.err().map(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default()
    })
}

/// Checks one failure of a backend: its error chain must not contain the canary, and the
/// panic that `.unwrap()`/`.expect()` on it would print must not either.
#[track_caller]
pub fn check_failure<T: std::fmt::Debug>(
    secret: &str,
    result: Result<T, apono_core::SecretError>,
    context: &str,
) -> apono_core::SecretError {
    let error = match result {
        Ok(value) => panic!("{context}: expected an error, got {value:?}"),
        Err(e) => e,
    };
    assert_no_leak(secret, &error_text(&error), context);
    let message = panic_message(std::panic::AssertUnwindSafe(|| {
        let r: Result<(), &apono_core::SecretError> = std::hint::black_box(Err(&error));
        r.expect("the secret store failed");
    }))
    .unwrap_or_default();
    assert_no_leak(secret, &message, context);
    error
}

/// A TCP port on loopback where nothing listens.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

/// A listener that accepts connections (through the kernel backlog) and never answers:
/// requests to it hang until the client's timeout.
pub fn silent_listener() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    (listener, port)
}
