//! Running one [`RemoteCommand`] over WinRM: open a `cmd` shell, start the command, send its
//! stdin, collect its output and exit code, delete the shell.
//!
//! Two implementations, chosen by the configuration:
//!
//! * [`WinrmRsTransport`] (the `winrm-rs` crate): plain HTTP (Basic only with the explicit
//!   opt-in, or NTLM with sealing) and HTTPS verified against the public web roots.
//! * [`PinnedCaTransport`] (ours, minimal): HTTPS verified against the configured
//!   `ca_certificate`, with Basic. `winrm-rs` 1.1 builds its TLS verifier from the compiled-in
//!   `webpki-roots` only and offers no way to add a root or to inject an HTTP client; the
//!   versions that can (1.2+, 2.x) need rustc 1.98.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use data_encoding::BASE64;
use secrecy::{ExposeSecret, SecretString};
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};

use crate::config::{WindowsConfig, WinrmAuth};
use crate::script::RemoteCommand;

/// What a command printed and how it exited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CommandOutput {
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    pub(crate) exit_code: i32,
}

/// Why a command could not be run. Messages never contain secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The configuration would send the admin password in the clear.
    #[error(
        "refusing HTTP Basic over unencrypted HTTP; use use_ssl = true, auth = ntlm, or set allow_unencrypted_basic = true"
    )]
    UnencryptedBasic,
    /// The TLS settings are unusable (a CA certificate that does not parse).
    #[error("invalid TLS settings: {0}")]
    TlsConfig(String),
    /// The server rejected the credentials (HTTP 401).
    #[error("WinRM authentication failed")]
    Unauthorized,
    /// The server could not be reached, the TLS handshake failed (an untrusted or mismatched
    /// certificate) or the connection broke.
    #[error("WinRM connection failed")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The server answered something unexpected (a SOAP fault, a malformed response).
    #[error("WinRM protocol error: {0}")]
    Protocol(String),
}

impl TransportError {
    /// Whether the failure was in the TLS handshake (an untrusted or mismatched certificate).
    pub fn is_tls(&self) -> bool {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = source {
            let text = e.to_string().to_ascii_lowercase();
            if text.contains("certificate") || text.contains("tls") || text.contains("handshake") {
                return true;
            }
            source = e.source();
        }
        false
    }
}

/// Runs commands on the target.
#[async_trait]
pub(crate) trait Transport: Send + Sync + fmt::Debug {
    async fn run(&self, command: &RemoteCommand) -> Result<CommandOutput, TransportError>;
}

/// The admin credentials for one action, read from the integration's secret.
pub(crate) struct AdminCredentials {
    pub(crate) username: String,
    pub(crate) password: SecretString,
}

/// Builds the transport the configuration asks for, refusing insecure combinations before
/// anything is sent.
pub(crate) fn transport_for(
    config: &WindowsConfig,
    credentials: AdminCredentials,
) -> Result<Box<dyn Transport>, TransportError> {
    if !config.use_ssl && config.auth == WinrmAuth::Basic {
        if !config.allow_unencrypted_basic {
            return Err(TransportError::UnencryptedBasic);
        }
        tracing::warn!(
            host = %config.host,
            "WinRM Basic authentication over unencrypted HTTP: the admin password crosses the network in the clear (allow_unencrypted_basic = true)"
        );
    }
    match &config.ca_certificate {
        Some(pem) if config.use_ssl => {
            Ok(Box::new(PinnedCaTransport::new(config, pem, credentials)?))
        }
        _ => Ok(Box::new(WinrmRsTransport::new(config, credentials)?)),
    }
}

// ---------------------------------------------------------------------------------------------

/// `winrm-rs`: one shell per command.
pub(crate) struct WinrmRsTransport {
    client: winrm_rs::WinrmClient,
    host: String,
}

impl fmt::Debug for WinrmRsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WinrmRsTransport")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl WinrmRsTransport {
    fn new(config: &WindowsConfig, credentials: AdminCredentials) -> Result<Self, TransportError> {
        let auth_method = match config.auth {
            WinrmAuth::Basic => winrm_rs::AuthMethod::Basic,
            WinrmAuth::Ntlm => winrm_rs::AuthMethod::Ntlm,
        };
        let (domain, user) = match credentials.username.split_once('\\') {
            Some((domain, user)) if config.auth == WinrmAuth::Ntlm => (domain, user),
            _ => ("", credentials.username.as_str()),
        };
        let winrm_config = winrm_rs::WinrmConfig {
            port: config.effective_winrm_port(),
            use_tls: config.use_ssl,
            accept_invalid_certs: false,
            operation_timeout_secs: config.operation_timeout_secs,
            connect_timeout_secs: 15,
            auth_method,
            ..winrm_rs::WinrmConfig::default()
        };
        let creds = winrm_rs::WinrmCredentials {
            username: user.to_owned(),
            password: credentials.password.clone(),
            domain: domain.to_owned(),
        };
        let client = winrm_rs::WinrmClient::new(winrm_config, creds).map_err(map_winrm)?;
        Ok(Self {
            client,
            host: config.host.clone(),
        })
    }
}

fn map_winrm(e: winrm_rs::WinrmError) -> TransportError {
    match e {
        winrm_rs::WinrmError::AuthFailed(text) if text.contains("401") => {
            TransportError::Unauthorized
        }
        winrm_rs::WinrmError::Http(e) => TransportError::Connect(Box::new(e)),
        winrm_rs::WinrmError::Timeout(secs) => {
            TransportError::Protocol(format!("operation timed out after {secs}s"))
        }
        other => TransportError::Protocol(other.to_string()),
    }
}

#[async_trait]
impl Transport for WinrmRsTransport {
    async fn run(&self, command: &RemoteCommand) -> Result<CommandOutput, TransportError> {
        let shell = self
            .client
            .open_shell(&self.host)
            .await
            .map_err(map_winrm)?;
        let result = async {
            let args: Vec<&str> = command.arguments.iter().map(String::as_str).collect();
            let id = shell
                .start_command(command.program, &args)
                .await
                .map_err(map_winrm)?;
            shell
                .send_input(&id, command.stdin.as_bytes(), true)
                .await
                .map_err(map_winrm)?;
            let mut output = CommandOutput::default();
            loop {
                let chunk = shell.receive_next(&id).await.map_err(map_winrm)?;
                output.stdout.extend_from_slice(&chunk.stdout);
                output.stderr.extend_from_slice(&chunk.stderr);
                if let Some(code) = chunk.exit_code {
                    output.exit_code = code;
                }
                if chunk.done {
                    break;
                }
            }
            Ok(output)
        }
        .await;
        if let Err(e) = shell.close().await {
            tracing::debug!(error = %e, "could not delete the WinRM shell");
        }
        result
    }
}

// ---------------------------------------------------------------------------------------------

const NS: &str = concat!(
    r#"xmlns:s="http://www.w3.org/2003/05/soap-envelope" "#,
    r#"xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing" "#,
    r#"xmlns:wsman="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" "#,
    r#"xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell""#
);
const RESOURCE_CMD: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd";
const SHELL_ACTION: &str = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/";
const STATE_DONE: &str = "CommandState/Done";

/// WS-Management over HTTPS verified against the configured CA, with Basic authentication.
pub(crate) struct PinnedCaTransport {
    http: reqwest::Client,
    url: String,
    authorization: SecretString,
    timeout_secs: u64,
}

impl fmt::Debug for PinnedCaTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedCaTransport")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl PinnedCaTransport {
    fn new(
        config: &WindowsConfig,
        ca_pem: &str,
        credentials: AdminCredentials,
    ) -> Result<Self, TransportError> {
        let tls = tls_config(ca_pem)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(config.operation_timeout_secs + 10))
            .http1_only()
            .build()
            .map_err(|e| TransportError::TlsConfig(e.to_string()))?;
        let host = if config.host.contains(':') && !config.host.starts_with('[') {
            format!("[{}]", config.host)
        } else {
            config.host.clone()
        };
        let raw = zeroize::Zeroizing::new(format!(
            "{}:{}",
            credentials.username,
            credentials.password.expose_secret()
        ));
        Ok(Self {
            http,
            url: format!("https://{host}:{}/wsman", config.effective_winrm_port()),
            authorization: SecretString::from(format!("Basic {}", BASE64.encode(raw.as_bytes()))),
            timeout_secs: config.operation_timeout_secs,
        })
    }

    fn header(&self, action: &str, shell_id: Option<&str>, options: &str) -> String {
        let selector = shell_id.map_or_else(String::new, |id| {
            format!(
                r#"<wsman:SelectorSet><wsman:Selector Name="ShellId">{}</wsman:Selector></wsman:SelectorSet>"#,
                xml_escape(id)
            )
        });
        format!(
            concat!(
                "<s:Header><wsa:To>{url}</wsa:To>",
                r#"<wsman:ResourceURI s:mustUnderstand="true">{resource}</wsman:ResourceURI>"#,
                r#"<wsa:ReplyTo><wsa:Address s:mustUnderstand="true">http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsa:Address></wsa:ReplyTo>"#,
                r#"<wsa:Action s:mustUnderstand="true">{action}</wsa:Action>"#,
                r#"<wsman:MaxEnvelopeSize s:mustUnderstand="true">153600</wsman:MaxEnvelopeSize>"#,
                "<wsa:MessageID>uuid:{id}</wsa:MessageID>",
                r#"<wsman:Locale xml:lang="en-US" s:mustUnderstand="false"/>"#,
                "<wsman:OperationTimeout>PT{timeout}S</wsman:OperationTimeout>{selector}{options}</s:Header>"
            ),
            url = xml_escape(&self.url),
            resource = RESOURCE_CMD,
            action = action,
            id = message_id(),
            timeout = self.timeout_secs,
            selector = selector,
            options = options,
        )
    }

    async fn post(&self, envelope: String) -> Result<String, TransportError> {
        let response = self
            .http
            .post(&self.url)
            .header("Content-Type", "application/soap+xml;charset=UTF-8")
            .header("Authorization", self.authorization.expose_secret())
            .body(envelope)
            .send()
            .await
            .map_err(|e| TransportError::Connect(Box::new(e)))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| TransportError::Connect(Box::new(e)))?;
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(TransportError::Unauthorized);
        }
        if !status.is_success() {
            let reason = element_text(&body, "Text")
                .or_else(|| element_text(&body, "Message"))
                .unwrap_or_default();
            return Err(TransportError::Protocol(format!(
                "HTTP {status}: {}",
                reason.chars().take(300).collect::<String>()
            )));
        }
        Ok(body)
    }

    async fn create_shell(&self) -> Result<String, TransportError> {
        let options = concat!(
            r#"<wsman:OptionSet><wsman:Option Name="WINRS_NOPROFILE">TRUE</wsman:Option>"#,
            r#"<wsman:Option Name="WINRS_CODEPAGE">65001</wsman:Option></wsman:OptionSet>"#
        );
        let envelope = format!(
            "<s:Envelope {NS}>{}<s:Body><rsp:Shell><rsp:InputStreams>stdin</rsp:InputStreams><rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell></s:Body></s:Envelope>",
            self.header(
                "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create",
                None,
                options
            )
        );
        let body = self.post(envelope).await?;
        element_text(&body, "ShellId")
            .ok_or_else(|| TransportError::Protocol("no ShellId in the Create response".into()))
    }

    async fn delete_shell(&self, shell_id: &str) -> Result<(), TransportError> {
        let envelope = format!(
            "<s:Envelope {NS}>{}<s:Body/></s:Envelope>",
            self.header(
                "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete",
                Some(shell_id),
                ""
            )
        );
        self.post(envelope).await.map(drop)
    }

    async fn run_in(
        &self,
        shell_id: &str,
        command: &RemoteCommand,
    ) -> Result<CommandOutput, TransportError> {
        let options = r#"<wsman:OptionSet><wsman:Option Name="WINRS_CONSOLEMODE_STDIN">TRUE</wsman:Option><wsman:Option Name="WINRS_SKIP_CMD_SHELL">FALSE</wsman:Option></wsman:OptionSet>"#;
        let args: String = command
            .arguments
            .iter()
            .map(|a| format!("<rsp:Arguments>{}</rsp:Arguments>", xml_escape(a)))
            .collect();
        let envelope = format!(
            "<s:Envelope {NS}>{}<s:Body><rsp:CommandLine><rsp:Command>{}</rsp:Command>{args}</rsp:CommandLine></s:Body></s:Envelope>",
            self.header(&format!("{SHELL_ACTION}Command"), Some(shell_id), options),
            xml_escape(command.program),
        );
        let body = self.post(envelope).await?;
        let command_id = element_text(&body, "CommandId").ok_or_else(|| {
            TransportError::Protocol("no CommandId in the Command response".into())
        })?;

        let send = zeroize::Zeroizing::new(format!(
            r#"<s:Envelope {NS}>{}<s:Body><rsp:Send><rsp:Stream Name="stdin" CommandId="{}" End="true">{}</rsp:Stream></rsp:Send></s:Body></s:Envelope>"#,
            self.header(&format!("{SHELL_ACTION}Send"), Some(shell_id), ""),
            xml_escape(&command_id),
            BASE64.encode(command.stdin.as_bytes()),
        ));
        self.post(send.to_string()).await?;

        let mut output = CommandOutput::default();
        loop {
            let envelope = format!(
                r#"<s:Envelope {NS}>{}<s:Body><rsp:Receive><rsp:DesiredStream CommandId="{}">stdout stderr</rsp:DesiredStream></rsp:Receive></s:Body></s:Envelope>"#,
                self.header(&format!("{SHELL_ACTION}Receive"), Some(shell_id), ""),
                xml_escape(&command_id),
            );
            let body = match self.post(envelope).await {
                // The command is still running: Windows answers w:TimedOut; poll again.
                Err(TransportError::Protocol(text)) if text.contains("OperationTimeout") => {
                    continue;
                }
                other => other?,
            };
            for (attrs, text) in elements(&body, "Stream") {
                let data = BASE64
                    .decode(text.trim().as_bytes())
                    .map_err(|_| TransportError::Protocol("stream is not base64".into()))?;
                match attribute(attrs, "Name") {
                    Some("stdout") => output.stdout.extend_from_slice(&data),
                    Some("stderr") => output.stderr.extend_from_slice(&data),
                    _ => {}
                }
            }
            if let Some(code) = element_text(&body, "ExitCode") {
                output.exit_code = code
                    .parse()
                    .map_err(|_| TransportError::Protocol("ExitCode is not a number".into()))?;
            }
            let done = elements(&body, "CommandState").iter().any(|(attrs, _)| {
                attribute(attrs, "State").is_some_and(|s| s.ends_with(STATE_DONE))
            });
            if done {
                break;
            }
        }
        let signal = format!(
            r#"<s:Envelope {NS}>{}<s:Body><rsp:Signal CommandId="{}"><rsp:Code>http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/terminate</rsp:Code></rsp:Signal></s:Body></s:Envelope>"#,
            self.header(&format!("{SHELL_ACTION}Signal"), Some(shell_id), ""),
            xml_escape(&command_id),
        );
        self.post(signal).await?;
        Ok(output)
    }
}

#[async_trait]
impl Transport for PinnedCaTransport {
    async fn run(&self, command: &RemoteCommand) -> Result<CommandOutput, TransportError> {
        let shell_id = self.create_shell().await?;
        let result = self.run_in(&shell_id, command).await;
        if let Err(e) = self.delete_shell(&shell_id).await {
            tracing::debug!(error = %e, "could not delete the WinRM shell");
        }
        result
    }
}

fn message_id() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex = data_encoding::HEXUPPER.encode(&bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A rustls client configuration that trusts exactly the configured CA certificates, checks
/// the host name, and refuses a server certificate that is itself one of the trust anchors (a
/// self-signed certificate "trusted" by pinning it).
fn tls_config(ca_pem: &str) -> Result<rustls::ClientConfig, TransportError> {
    let anchors: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TransportError::TlsConfig(format!("ca_certificate: {e}")))?;
    if anchors.is_empty() {
        return Err(TransportError::TlsConfig(
            "ca_certificate holds no PEM certificate".into(),
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    for anchor in &anchors {
        roots
            .add(anchor.clone())
            .map_err(|e| TransportError::TlsConfig(format!("ca_certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| TransportError::TlsConfig(e.to_string()))?;
    let verifier = NotAnAnchor {
        inner: webpki,
        anchors,
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TransportError::TlsConfig(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Full WebPKI verification (chain to a configured CA, validity, host name), plus: the end-entity
/// certificate must not be one of the anchors.
#[derive(Debug)]
struct NotAnAnchor {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    anchors: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for NotAnAnchor {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .anchors
            .iter()
            .any(|a| a.as_ref() == end_entity.as_ref())
        {
            return Err(rustls::Error::General(
                "self-signed server certificate: the server's own certificate is not a CA".into(),
            ));
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

// ---------------------------------------------------------------------------------------------
// Minimal XML reading for WS-Management responses.

fn elements<'a>(xml: &'a str, local: &str) -> Vec<(&'a str, &'a str)> {
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(lt) = rest.find('<') {
        rest = &rest[lt + 1..];
        let name_end = rest
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .unwrap_or(rest.len());
        let name = &rest[..name_end];
        if name.starts_with(['/', '?', '!']) || name.rsplit(':').next() != Some(local) {
            continue;
        }
        let Some(gt) = rest.find('>') else { break };
        let attrs = &rest[name_end..gt];
        if let Some(attrs) = attrs.strip_suffix('/') {
            found.push((attrs, ""));
            rest = &rest[gt + 1..];
            continue;
        }
        let body = &rest[gt + 1..];
        let Some(end) = body.find(&format!("</{name}>")) else {
            break;
        };
        found.push((attrs, &body[..end]));
        rest = &body[end..];
    }
    found
}

fn element_text(xml: &str, local: &str) -> Option<String> {
    elements(xml, local)
        .first()
        .map(|(_, text)| xml_unescape(text.trim()))
}

fn attribute<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    let pattern = format!("{name}=\"");
    let start = attrs.find(&pattern)? + pattern.len();
    let end = attrs[start..].find('"')?;
    Some(&attrs[start..start + end])
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn xml_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}
