//! The command line, as clap derives it. Names and flags follow Apono's own CLI where it has
//! the command.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Request just-in-time access, approve it and use it.
///
/// Without a command, on a terminal, `apono` asks what to do: request new access or connect to
/// an active session.
#[derive(Debug, Parser)]
#[command(
    name = "apono",
    version,
    max_term_width = 100,
    after_help = "Environment: APONO_URL and APONO_TOKEN, when both set, are used without \
                  any login\n(unless --profile is given; APONO_CA_CERT names a CA file to trust \
                  with them); APONO_TOKEN alone goes with the active profile's URL. Profiles live in \
                  $XDG_CONFIG_HOME/apono/config.json (mode 0600).\n\
                  Exit status: 0 success, 1 failure, 2 usage error."
)]
pub(crate) struct Cli {
    /// Show details of errors and of HTTP calls on stderr.
    #[arg(long, short = 'v', global = true)]
    pub(crate) verbose: bool,
    /// The profile to use (default: the active one; see `apono profiles`).
    #[arg(long, global = true, value_name = "NAME")]
    pub(crate) profile: Option<String>,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Saves a connector URL and a token as a profile (and makes it active): a personal token,
    /// or one the connector gives after you sign in with your identity provider (--sso, or
    /// --device on a machine without a browser).
    Login {
        /// The connector's URL, such as http://127.0.0.1:8080.
        #[arg(long, value_name = "URL")]
        url: String,
        /// Your personal token (`apono-connector tokens create`); `-` reads it from stdin.
        #[arg(long, value_name = "TOKEN", required_unless_present_any = ["sso", "device"], conflicts_with_all = ["sso", "device"])]
        personal_token: Option<String>,
        /// Sign in through the identity provider in the browser (authorization code with
        /// PKCE, back to a listener on 127.0.0.1).
        #[arg(long, conflicts_with = "device")]
        sso: bool,
        /// Sign in through the identity provider on another device (device authorization).
        #[arg(long)]
        device: bool,
        /// The identity provider's name, when the connector has several.
        #[arg(long, value_name = "NAME")]
        provider: Option<String>,
        /// With --sso: print the URL to open instead of opening the browser.
        #[arg(long)]
        no_browser: bool,
        /// A PEM file of the CA that signed the connector's TLS certificate (kept in the
        /// profile; default: web roots).
        #[arg(long = "ca-cert", value_name = "FILE")]
        ca_cert: Option<std::path::PathBuf>,
        /// Allow plain http:// to a host that is not loopback (the token then crosses the
        /// network in clear; kept in the profile).
        #[arg(long)]
        allow_insecure_http: bool,
    },
    /// Forgets the profile's token (and revokes it when it comes from a sign-in).
    Logout,
    /// Lists profiles or picks the active one.
    #[command(subcommand)]
    Profiles(ProfilesCommand),
    /// What can be requested: integrations, resource types, resources, permissions.
    #[command(subcommand)]
    Inventory(InventoryCommand),
    /// Access requests: create, list, describe, approve, reject, revoke.
    #[command(subcommand)]
    Requests(RequestsCommand),
    /// Access sessions: list, use, reset credentials.
    #[command(subcommand)]
    Access(AccessCommand),
    /// Secrets in an Apono Vault, through your active access session on it.
    #[command(subcommand)]
    Vault(VaultCommand),
    /// Your API tokens (admins: anyone's): list, revoke.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// The connector's audit log (admins).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Prints a shell completion script.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Prints the version.
    Version,
}

/// Output format of listing commands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// A table that fits the terminal.
    #[default]
    Table,
    /// JSON with the API's field names (stable; documented in the apono-client crate).
    Json,
    /// YAML with the same fields as JSON.
    Yaml,
}

#[derive(Clone, Copy, Debug, Args)]
pub(crate) struct OutputArg {
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
    pub(crate) output: Format,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ProfilesCommand {
    /// Lists profiles (never their tokens).
    List(OutputArg),
    /// Makes a profile the active one.
    Set {
        /// The profile.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum InventoryCommand {
    /// Lists integrations.
    Integrations(OutputArg),
    /// Lists an integration's resource types.
    ResourceTypes {
        /// The integration: its name or `type/name`.
        #[arg(long, short = 'i', value_name = "INTEGRATION")]
        integration: String,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Lists the resources of one resource type.
    Resources {
        /// The integration: its name or `type/name`.
        #[arg(long, short = 'i', value_name = "INTEGRATION")]
        integration: String,
        /// The resource type.
        #[arg(long = "resource-type", short = 't', value_name = "TYPE")]
        resource_type: String,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Lists the permissions of one resource type.
    Permissions {
        /// The integration: its name or `type/name`.
        #[arg(long, short = 'i', value_name = "INTEGRATION")]
        integration: String,
        /// The resource type.
        #[arg(long = "resource-type", short = 't', value_name = "TYPE")]
        resource_type: String,
        #[command(flatten)]
        output: OutputArg,
    },
}

/// Which requests `requests list` shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scope {
    /// Your own requests.
    #[default]
    Mine,
    /// Pending requests you may approve.
    Approvals,
    /// Every request (admins).
    All,
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// The integration: its name or `type/name`.
    #[arg(long, short = 'i', value_name = "INTEGRATION")]
    pub(crate) integration: String,
    /// The resource type.
    #[arg(long = "resource-type", short = 't', value_name = "TYPE")]
    pub(crate) resource_type: String,
    /// Resource ids (repeat or separate with commas).
    #[arg(long = "resources", short = 'r', value_name = "RESOURCE", required = true, num_args = 1.., value_delimiter = ',')]
    pub(crate) resources: Vec<String>,
    /// Permissions (repeat or separate with commas); one request per permission.
    #[arg(long = "permissions", short = 'p', value_name = "PERMISSION", required = true, num_args = 1.., value_delimiter = ',')]
    pub(crate) permissions: Vec<String>,
    /// Why you need the access.
    #[arg(long, short = 'j', value_name = "JUSTIFICATION")]
    pub(crate) justification: Option<String>,
    /// How long, such as 30m or 2h (default: the access flow's maximum).
    #[arg(long, short = 'd', value_name = "DURATION")]
    pub(crate) duration: Option<String>,
    /// Return once the request is created, without waiting for access.
    #[arg(long)]
    pub(crate) no_wait: bool,
    /// How long to wait for the request to become Active, Rejected or Failed.
    #[arg(long, value_name = "DURATION", default_value = "60s")]
    pub(crate) timeout: String,
    #[command(flatten)]
    pub(crate) output: OutputArg,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RequestsCommand {
    /// Requests access; checks it first and waits until it is Active, Rejected or Failed.
    Create(CreateArgs),
    /// Lists requests.
    List {
        /// Whose requests.
        #[arg(long, value_enum, default_value_t = Scope::Mine)]
        scope: Scope,
        /// Only requests created in the last N days.
        #[arg(long, value_name = "N")]
        days: Option<u32>,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Shows one request.
    Describe {
        /// The request id.
        id: String,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Approves a pending request.
    Approve {
        /// The request id.
        id: String,
        /// Why.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Rejects a pending request.
    Reject {
        /// The request id.
        id: String,
        /// Why (shown to the requester).
        #[arg(long, value_name = "TEXT")]
        reason: String,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Ends a request's access now (a pending request is withdrawn).
    Revoke {
        /// The request id.
        id: String,
        /// Wait until access is gone from the target.
        #[arg(long)]
        wait: bool,
        /// How long to wait with --wait.
        #[arg(long, value_name = "DURATION", default_value = "60s")]
        timeout: String,
        #[command(flatten)]
        output: OutputArg,
    },
}

/// What `access use` prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum UseFormat {
    /// Instructions for a person.
    #[default]
    Instructions,
    /// The command to run.
    Cli,
    /// The link to open.
    Link,
    /// Everything, as JSON, one-time credentials included.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AccessCommand {
    /// Lists your access sessions.
    List {
        /// Only sessions of this integration (name or `type/name`).
        #[arg(long, short = 'i', value_name = "INTEGRATION")]
        integration: Option<String>,
        /// Only sessions of this request.
        #[arg(long = "request-id", short = 'r', value_name = "REQUEST_ID")]
        request_id: Option<String>,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Shows how to use a session (one-time credentials are shown once), or connects.
    Use {
        /// The session id.
        session_id: String,
        /// What to print.
        #[arg(long, short = 'o', value_enum, default_value_t = UseFormat::Instructions)]
        output: UseFormat,
        /// Run the session's command (ssh, psql or mysql, the password in PGPASSWORD or
        /// MYSQL_PWD) instead of printing it.
        #[arg(long)]
        run: bool,
        /// With --run, after `--`: ssh options and/or a remote command, as after
        /// `ssh user@host` (such as `-- -o BatchMode=yes uptime`); for a database, the
        /// client's arguments (such as `-- -c 'select 1'`).
        #[arg(last = true, value_name = "ARGS")]
        args: Vec<String>,
    },
    /// Issues fresh credentials for a session.
    ResetCredentials {
        /// The session id.
        session_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokensCommand {
    /// Lists API tokens (never the tokens themselves): yours, or with --user or --all
    /// (admins) others'.
    List {
        /// This user's tokens (admins).
        #[arg(long, value_name = "EMAIL", conflicts_with = "all")]
        user: Option<String>,
        /// Every user's tokens (admins).
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Revokes a token (yours, or anyone's for an admin); it stops working at once on every
    /// replica.
    Revoke {
        /// The token's id (`tok_…`, from apono tokens list).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Lists audit records.
    List {
        /// Only records newer than this: a duration such as 24h, or an RFC 3339 time.
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        #[command(flatten)]
        output: OutputArg,
    },
}

/// Which vault and session `apono vault` uses.
#[derive(Debug, Args)]
pub(crate) struct VaultArgs {
    /// The `apono-vault` integration (its name or `apono-vault/name`).
    #[arg(long = "vault-id", value_name = "NAME")]
    pub(crate) vault_id: String,
    /// The access session to use (default: your broadest active one on that vault).
    #[arg(long, value_name = "SESSION_ID")]
    pub(crate) session: Option<String>,
    /// A PEM file of the CA that signed the vault's TLS certificate (default: web roots).
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub(crate) ca_cert: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub(crate) output: OutputArg,
}

/// A secret's contents.
#[derive(Debug, Args)]
pub(crate) struct ValueArg {
    /// The secret's key/value pairs as a JSON object, such as '{"username":"admin"}';
    /// `-` reads it from stdin.
    #[arg(long, value_name = "JSON")]
    pub(crate) value: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum VaultCommand {
    /// Lists secret paths under a folder (default: the whole mount), recursively.
    List {
        #[command(flatten)]
        vault: VaultArgs,
        /// The folder, such as team/ or apono-store/team.
        #[arg(value_name = "MOUNT/PATH")]
        path: Option<String>,
    },
    /// Prints a secret's keys and values.
    Fetch {
        #[command(flatten)]
        vault: VaultArgs,
        /// The secret, such as team/db or apono-store/team/db.
        #[arg(value_name = "MOUNT/PATH")]
        path: String,
    },
    /// Creates a secret; refuses one that exists (use update).
    Create {
        #[command(flatten)]
        vault: VaultArgs,
        /// The secret.
        #[arg(value_name = "MOUNT/PATH")]
        path: String,
        #[command(flatten)]
        value: ValueArg,
    },
    /// Replaces an existing secret's key/value pairs with a new version.
    Update {
        #[command(flatten)]
        vault: VaultArgs,
        /// The secret.
        #[arg(value_name = "MOUNT/PATH")]
        path: String,
        #[command(flatten)]
        value: ValueArg,
    },
    /// Deletes a secret with all its versions.
    Delete {
        #[command(flatten)]
        vault: VaultArgs,
        /// The secret.
        #[arg(value_name = "MOUNT/PATH")]
        path: String,
    },
}
