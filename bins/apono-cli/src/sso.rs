//! `apono login --sso` and `--device`: signing in through the connector's identity provider.
//!
//! The connector is the OIDC client: it keeps the client secret, the PKCE verifier, the nonce
//! and the provider's tokens, and gives this CLI its own API token. `--sso` listens on
//! `127.0.0.1:<ephemeral port>`, has the connector start the sign-in with that as the redirect
//! URI, opens the browser (or prints the URL), takes the `code` and `state` the browser brings
//! back (the state must be the one it started with) and hands them to the connector. `--device`
//! shows the provider's code and address, and polls the connector until the person has signed in
//! elsewhere.

#![allow(clippy::print_stderr)] // what the person must do is said on stderr, as `login` does

use std::time::Duration;

use apono_client::{Client, ClientError, Profile, parse_base_url};
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::context::{Explain, fail};

/// How to sign in.
pub(crate) struct How {
    /// The device authorization grant instead of the browser.
    pub(crate) device: bool,
    /// The identity provider's name (needed when the connector has several).
    pub(crate) provider: Option<String>,
    /// Open the browser (else the URL is only printed).
    pub(crate) open_browser: bool,
}

/// The longest a sign-in may take.
const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(600);

fn anonymous_client(
    url: &str,
    ca_cert: &Option<std::path::PathBuf>,
    allow_insecure_http: bool,
) -> anyhow::Result<Client> {
    let base = parse_base_url(url).explained()?;
    let profile = Profile {
        url: base.as_str().trim_end_matches('/').to_owned(),
        personal_token: SecretString::from(String::new()),
        ca_cert: ca_cert.clone(),
        allow_insecure_http,
    };
    crate::context::client_for(&profile)
}

fn refused(e: ClientError) -> anyhow::Error {
    match e {
        ClientError::Forbidden { message } => fail(format!("sign-in refused: {message}")),
        ClientError::NotFound { message } => fail(format!("sign-in: {message}")),
        other => crate::context::explain(other),
    }
}

/// Signs in and answers the connector's token.
pub(crate) async fn sign_in(
    url: &str,
    ca_cert: &Option<std::path::PathBuf>,
    allow_insecure_http: bool,
    how: How,
) -> anyhow::Result<String> {
    let client = anonymous_client(url, ca_cert, allow_insecure_http)?;
    let signed_in = if how.device {
        device(&client, how.provider.as_deref()).await?
    } else {
        browser(&client, how.provider.as_deref(), how.open_browser).await?
    };
    Ok(signed_in.token.expose_secret().to_owned())
}

async fn device(client: &Client, provider: Option<&str>) -> anyhow::Result<apono_client::SignedIn> {
    let started = client.sso_device(provider).await.map_err(refused)?;
    eprintln!(
        "To sign in, open {} and enter the code {}",
        started.verification_uri, started.user_code
    );
    if let Some(complete) = &started.verification_uri_complete {
        eprintln!("(or open {complete})");
    }
    let mut interval = Duration::from_secs(started.interval.clamp(1, 60));
    let deadline = tokio::time::Instant::now() + SIGN_IN_TIMEOUT;
    loop {
        tokio::time::sleep(interval).await;
        match client.sso_device_token(&started.handle).await {
            Ok(Some(s)) => return Ok(s),
            Ok(None) => {}
            Err(e) => return Err(refused(e)),
        }
        if tokio::time::Instant::now() > deadline {
            return Err(fail("sign-in timed out: the code was not entered in time"));
        }
        interval = interval.min(Duration::from_secs(60));
    }
}

/// The query parameters of a request line's target (`GET /callback?code=…&state=… HTTP/1.1`).
fn callback_query(request: &str) -> Option<Vec<(String, String)>> {
    let target = request.lines().next()?.split(' ').nth(1)?;
    let url = url_of(target)?;
    (url.path() == "/callback").then(|| url.query_pairs().into_owned().collect())
}

fn url_of(target: &str) -> Option<url::Url> {
    url::Url::parse(&format!("http://127.0.0.1{target}")).ok()
}

async fn browser(
    client: &Client,
    provider: Option<&str>,
    open_browser: bool,
) -> anyhow::Result<apono_client::SignedIn> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| fail(format!("cannot listen on 127.0.0.1 for the sign-in: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| fail(format!("cannot listen on 127.0.0.1 for the sign-in: {e}")))?
        .port();
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let (authorization_url, state) = client
        .sso_start(provider, &redirect_uri)
        .await
        .map_err(refused)?;
    eprintln!("Sign in in your browser: {authorization_url}");
    if open_browser {
        let opener = if cfg!(target_os = "macos") {
            "open"
        } else {
            "xdg-open"
        };
        let _ = std::process::Command::new(opener)
            .arg(&authorization_url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    let wait = async {
        loop {
            let (mut stream, _) = listener
                .accept()
                .await
                .map_err(|e| fail(format!("waiting for the browser: {e}")))?;
            let mut buf = vec![0_u8; 16 * 1024];
            let n = stream.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).into_owned();
            let Some(query) = callback_query(&request) else {
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await;
                continue;
            };
            let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let page = |status: &str, text: &str| {
                format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                )
            };
            if let Some(error) = get("error") {
                let _ = stream
                    .write_all(
                        page("400 Bad Request", "Sign-in failed; see the terminal.").as_bytes(),
                    )
                    .await;
                let error: String = error
                    .chars()
                    .filter(|c| c.is_ascii_graphic())
                    .take(80)
                    .collect();
                return Err(fail(format!(
                    "the identity provider refused the sign-in: {error}"
                )));
            }
            let (Some(code), Some(back)) = (get("code"), get("state")) else {
                let _ = stream
                    .write_all(page("400 Bad Request", "No code.").as_bytes())
                    .await;
                continue;
            };
            if back != state {
                // Not the sign-in this CLI started (a forged or stale redirect).
                let _ = stream
                    .write_all(page("400 Bad Request", "Unexpected sign-in; ignored.").as_bytes())
                    .await;
                continue;
            }
            let result = client.sso_callback(&state, &code).await;
            let text = if result.is_ok() {
                "Signed in. You can close this window and go back to the terminal."
            } else {
                "Sign-in failed; see the terminal."
            };
            let _ = stream.write_all(page("200 OK", text).as_bytes()).await;
            return result.map_err(refused);
        }
    };
    tokio::time::timeout(SIGN_IN_TIMEOUT, wait)
        .await
        .map_err(|_| fail("sign-in timed out: the browser did not come back in time"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_callback_path_is_taken() {
        let q = callback_query("GET /callback?code=abc&state=x%2By HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert_eq!(
            q,
            vec![
                ("code".into(), "abc".into()),
                ("state".into(), "x+y".into())
            ]
        );
        assert!(callback_query("GET /favicon.ico HTTP/1.1\r\n").is_none());
        assert!(callback_query("").is_none());
    }
}
