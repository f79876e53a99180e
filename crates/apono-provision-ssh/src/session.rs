//! Authenticated SSH sessions to the integration's servers, pooled and reused across actions.
//!
//! Each server has at most one connection, shared by concurrent actions as separate channels
//! (at most [`PoolOptions::max_channels_per_server`] at once). A connection idle for longer
//! than [`PoolOptions::idle_timeout`], closed by the server, or authenticated with a different
//! admin key than the current action's is replaced transparently.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::client::{self, Handle};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};
use tokio::sync::{Mutex, Semaphore};

use crate::config::ServerConfig;
use crate::trust::{HostKeyRejected, HostTrust};

/// Limits of the session pool.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    /// Channels (concurrent actions) per server connection. Default: 8 (OpenSSH's
    /// `MaxSessions` is 10).
    pub max_channels_per_server: usize,
    /// A connection unused for this long is closed and replaced on next use. Default: 60 s.
    pub idle_timeout: Duration,
    /// Time allowed to connect and authenticate. Default: 15 s.
    pub connect_timeout: Duration,
    /// Whether connections are kept for reuse at all. Default: `true`.
    pub reuse: bool,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_channels_per_server: 8,
            idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(15),
            reuse: true,
        }
    }
}

/// A transport failure (never contains secrets).
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    #[error(transparent)]
    HostKey(#[from] HostKeyRejected),
    #[error("ssh protocol error")]
    Ssh(#[from] russh::Error),
    #[error("{0}")]
    Auth(String),
    #[error("timed out connecting")]
    ConnectTimeout,
    #[error("connection failed")]
    Io(#[source] std::io::Error),
}

/// The russh client handler: checks the host key against the trust policy.
pub(crate) struct Client {
    server: ServerConfig,
    trust: Arc<HostTrust>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    #[error(transparent)]
    HostKey(HostKeyRejected),
    #[error(transparent)]
    Ssh(#[from] russh::Error),
}

impl client::Handler for Client {
    type Error = ClientError;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        self.trust
            .verify(&self.server, offered)
            .map(|()| true)
            .map_err(ClientError::HostKey)
    }
}

impl From<ClientError> for TransportError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::HostKey(e) => Self::HostKey(e),
            ClientError::Ssh(russh::Error::IO(e)) => Self::Io(e),
            ClientError::Ssh(e) => Self::Ssh(e),
        }
    }
}

/// What a command printed and how it ended.
#[derive(Debug, Default)]
pub(crate) struct Output {
    pub(crate) status: Option<u32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

struct Pooled {
    handle: Arc<Handle<Client>>,
    key_id: String,
    last_used: Instant,
}

struct Slot {
    conn: Mutex<Option<Pooled>>,
    channels: Semaphore,
}

/// The pool: one slot per configured server.
pub(crate) struct SessionPool {
    options: PoolOptions,
    trust: Arc<HostTrust>,
    slots: HashMap<String, Arc<Slot>>,
}

impl std::fmt::Debug for SessionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPool")
            .field("options", &self.options)
            .field("servers", &self.slots.len())
            .finish_non_exhaustive()
    }
}

/// The admin identity of one action.
pub(crate) struct AdminKey {
    pub(crate) key: Arc<PrivateKey>,
    /// The key's public fingerprint: a pooled connection is reused only for the same key.
    pub(crate) id: String,
}

impl SessionPool {
    pub(crate) fn new(
        options: PoolOptions,
        trust: Arc<HostTrust>,
        servers: &[ServerConfig],
    ) -> Self {
        let channels = options.max_channels_per_server.max(1);
        let slots = servers
            .iter()
            .map(|s| {
                let slot = Slot {
                    conn: Mutex::new(None),
                    channels: Semaphore::new(channels),
                };
                (s.name.clone(), Arc::new(slot))
            })
            .collect();
        Self {
            options,
            trust,
            slots,
        }
    }

    /// Connects and authenticates, or reuses a live pooled connection.
    async fn checkout(
        &self,
        slot: &Slot,
        server: &ServerConfig,
        admin: &AdminKey,
        fresh: bool,
    ) -> Result<Arc<Handle<Client>>, TransportError> {
        let mut conn = slot.conn.lock().await;
        if let Some(pooled) = conn.as_mut() {
            let usable = !fresh
                && self.options.reuse
                && !pooled.handle.is_closed()
                && pooled.key_id == admin.id
                && pooled.last_used.elapsed() < self.options.idle_timeout;
            if usable {
                pooled.last_used = Instant::now();
                return Ok(pooled.handle.clone());
            }
            let old = conn.take();
            if let Some(old) = old {
                // Best effort; the server drops the connection anyway.
                let _ = old
                    .handle
                    .disconnect(Disconnect::ByApplication, "", "en")
                    .await;
            }
        }
        let handle = Arc::new(
            tokio::time::timeout(self.options.connect_timeout, self.connect(server, admin))
                .await
                .map_err(|_| TransportError::ConnectTimeout)??,
        );
        if self.options.reuse {
            *conn = Some(Pooled {
                handle: handle.clone(),
                key_id: admin.id.clone(),
                last_used: Instant::now(),
            });
        }
        Ok(handle)
    }

    async fn connect(
        &self,
        server: &ServerConfig,
        admin: &AdminKey,
    ) -> Result<Handle<Client>, TransportError> {
        let config = Arc::new(client::Config {
            inactivity_timeout: self.options.reuse.then_some(self.options.idle_timeout),
            nodelay: true,
            ..client::Config::default()
        });
        let handler = Client {
            server: server.clone(),
            trust: self.trust.clone(),
        };
        let stream = tokio::net::TcpStream::connect((server.host.as_str(), server.port))
            .await
            .map_err(TransportError::Io)?;
        stream.set_nodelay(true).map_err(TransportError::Io)?;
        let mut handle = client::connect_stream(config, stream, handler).await?;
        let hash = handle.best_supported_rsa_hash().await?.flatten();
        let auth = handle
            .authenticate_publickey(
                server.user.clone(),
                PrivateKeyWithHashAlg::new(admin.key.clone(), hash),
            )
            .await?;
        if !auth.success() {
            return Err(TransportError::Auth(format!(
                "the server refused the admin key for user {:?}",
                server.user
            )));
        }
        Ok(handle)
    }

    /// Runs `command` on `server` with `stdin`, over a pooled connection.
    ///
    /// A pooled connection that turns out dead when the channel is opened is replaced once;
    /// once the command is sent nothing is retried.
    pub(crate) async fn run(
        &self,
        server: &ServerConfig,
        admin: &AdminKey,
        command: &str,
        stdin: &[u8],
    ) -> Result<Output, TransportError> {
        let slot = self
            .slots
            .get(&server.name)
            .ok_or_else(|| TransportError::Auth("unknown server".into()))?;
        let _permit = slot
            .channels
            .acquire()
            .await
            .map_err(|_| TransportError::Auth("pool closed".into()))?;
        let mut fresh = false;
        let mut channel = loop {
            let handle = self.checkout(slot, server, admin, fresh).await?;
            match handle.channel_open_session().await {
                Ok(channel) => break channel,
                Err(e) if !fresh => {
                    tracing::debug!(server = %server.name, error = %e, "pooled connection is dead; reconnecting");
                    fresh = true;
                }
                Err(e) => return Err(e.into()),
            }
        };
        channel.exec(true, command.as_bytes()).await?;
        if !stdin.is_empty() {
            channel.data(stdin).await?;
        }
        channel.eof().await?;
        let mut out = Output::default();
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => stdout.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, ext: 1 } => stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => out.status = Some(exit_status),
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        out.stdout = String::from_utf8_lossy(&stdout).into_owned();
        out.stderr = String::from_utf8_lossy(&stderr).into_owned();
        Ok(out)
    }

    /// Connects (or reuses) and authenticates only.
    pub(crate) async fn authenticate(
        &self,
        server: &ServerConfig,
        admin: &AdminKey,
    ) -> Result<(), TransportError> {
        let slot = self
            .slots
            .get(&server.name)
            .ok_or_else(|| TransportError::Auth("unknown server".into()))?;
        self.checkout(slot, server, admin, false).await.map(drop)
    }
}
