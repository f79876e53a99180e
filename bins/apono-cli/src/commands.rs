//! What each command does: calls the client, then prints through `output`.
// Commands print results on stdout and notes for people on stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use apono_client::{
    AccessDetails, AccessRequest, AccessSession, Client, ClientError, Credentials, GrantStatus,
    NewRequest, Problem, Profile, RequestScope, RequestStatus, SecretValue, VaultAccess,
    VaultOptions, VaultWrite, parse_base_url, parse_duration, problem_code,
};
use chrono::Utc;
use secrecy::ExposeSecret;

use crate::cli::{
    AccessCommand, AuditCommand, Command, CreateArgs, Format, InventoryCommand, ProfilesCommand,
    RequestsCommand, Scope, TokensCommand, UseFormat, ValueArg, VaultArgs, VaultCommand,
};
use crate::context::{Context, Explain, fail, usage};
use crate::output::{emit, line, table, time, time_left};

/// How often a wait polls a connector that has no watch endpoint (the CLI long-polls otherwise).
const POLL: Duration = Duration::from_millis(300);

pub(crate) async fn run(ctx: &Context, command: Command) -> anyhow::Result<()> {
    // Keys of sessions that have ended by the clock go first, whatever the command.
    if let Ok(cache) = ctx.key_cache() {
        cache.remove_expired(Utc::now());
    }
    if let Ok(cache) = ctx.vault_cache() {
        cache.remove_expired(Utc::now());
    }
    match command {
        Command::Login {
            url,
            personal_token,
            sso,
            device,
            provider,
            no_browser,
            ca_cert,
            allow_insecure_http,
        } => match personal_token {
            Some(token) => login(ctx, &url, token, ca_cert, allow_insecure_http).await,
            None => {
                let how = crate::sso::How {
                    device,
                    provider,
                    open_browser: sso && !no_browser,
                };
                let token = crate::sso::sign_in(&url, &ca_cert, allow_insecure_http, how).await?;
                login(ctx, &url, token, ca_cert, allow_insecure_http).await
            }
        },
        Command::Tokens(cmd) => tokens(&ctx.client()?, cmd).await,
        Command::Logout => logout(ctx).await,
        Command::Profiles(cmd) => profiles(ctx, cmd),
        Command::Inventory(cmd) => inventory(&ctx.client()?, cmd).await,
        Command::Requests(cmd) => requests(ctx, cmd).await,
        Command::Access(cmd) => access(ctx, cmd).await,
        Command::Vault(cmd) => vault(ctx, cmd).await,
        Command::Audit(AuditCommand::List { since, output }) => {
            audit(&ctx.client()?, since.as_deref(), output.output).await
        }
        Command::Completion { shell } => {
            let mut cmd = <crate::cli::Cli as clap::CommandFactory>::command();
            // Generated in memory: clap_complete panics when its writer fails, and a closed
            // pipe (`apono completion bash | head -1`) is no failure.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "apono", &mut script);
            crate::output::out(&script).context("writing to stdout")
        }
        Command::Version => {
            line(format!("apono {}", env!("CARGO_PKG_VERSION")));
            Ok(())
        }
    }
}

// ------------------------------------------------------------------ profiles

async fn login(
    ctx: &Context,
    url: &str,
    token: String,
    ca_cert: Option<std::path::PathBuf>,
    allow_insecure_http: bool,
) -> anyhow::Result<()> {
    let token = if token == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| fail(format!("reading the token from stdin: {e}")))?;
        text.trim().to_owned()
    } else {
        token.trim().to_owned()
    };
    if token.is_empty() {
        return Err(usage("the personal token is empty"));
    }
    let base = parse_base_url(url).explained()?;
    let url = base.as_str().trim_end_matches('/').to_owned();
    let profile = Profile {
        url: url.clone(),
        personal_token: token.into(),
        ca_cert: ca_cert.map(|p| std::path::absolute(&p).unwrap_or(p)),
        allow_insecure_http,
    };
    let client = crate::context::client_for(&profile)?;
    // Proves the URL and the token before anything is saved.
    let me = match client.me().await {
        Ok(me) => me,
        Err(ClientError::Unauthenticated) => {
            return Err(fail(format!(
                "login failed: the connector at {url} refused the personal token (unknown, revoked or expired): check the token, or ask for a new one"
            )));
        }
        Err(e) => return Err(crate::context::explain(e)),
    };
    let path = ctx.config_path()?;
    let mut profiles = ctx.profiles()?;
    let name = ctx.profile.clone().unwrap_or_else(|| "default".to_owned());
    profiles.login(&name, profile).explained()?;
    profiles.save(&path).explained()?;
    eprintln!(
        "logged in to {url} as {}{} in profile {name:?} (saved in {})",
        me.email,
        if me.admin { " (admin)" } else { "" },
        path.display()
    );
    Ok(())
}

async fn logout(ctx: &Context) -> anyhow::Result<()> {
    let path = ctx.config_path()?;
    let mut profiles = ctx.profiles()?;
    let Some(name) = ctx.profile.clone().or(profiles.active.clone()) else {
        return Err(fail("not logged in: there is no profile to log out of"));
    };
    // A token from a sign-in is revoked at the connector; a personal token is left alone.
    if let Some(profile) = profiles.profiles.get(&name)
        && let Ok(client) = crate::context::client_for(profile)
    {
        match client.sso_logout().await {
            Ok(true) => eprintln!("revoked the signed-in token at {}", profile.url),
            Ok(false) | Err(ClientError::Unauthenticated) => {}
            Err(e) => eprintln!("warning: could not revoke the token at the connector: {e}"),
        }
    }
    if !profiles.logout(&name) {
        return Err(fail(format!("no profile {name:?} (apono profiles list)")));
    }
    profiles.save(&path).explained()?;
    eprintln!("logged out of profile {name:?}");
    Ok(())
}

fn profiles(ctx: &Context, cmd: ProfilesCommand) -> anyhow::Result<()> {
    let mut profiles = ctx.profiles()?;
    match cmd {
        ProfilesCommand::List(o) => {
            let list: Vec<serde_json::Value> = profiles
                .profiles
                .iter()
                .map(|(name, p)| {
                    serde_json::json!({
                        "name": name,
                        "url": p.url,
                        "active": profiles.active.as_deref() == Some(name),
                    })
                })
                .collect();
            emit(o.output, &list, |list| {
                table(
                    &["ACTIVE", "NAME", "URL"],
                    list.iter().map(|p| {
                        vec![
                            if p["active"] == true { "*" } else { "" }.to_owned(),
                            str_of(&p["name"]),
                            str_of(&p["url"]),
                        ]
                    }),
                )
            })
        }
        ProfilesCommand::Set { name } => {
            profiles.activate(&name).explained()?;
            profiles.save(&ctx.config_path()?).explained()?;
            eprintln!("active profile: {name}");
            Ok(())
        }
    }
}

fn str_of(v: &serde_json::Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

// ------------------------------------------------------------------ inventory

async fn inventory(client: &Client, cmd: InventoryCommand) -> anyhow::Result<()> {
    match cmd {
        InventoryCommand::Integrations(o) => {
            let list = client.integrations().await.explained()?;
            emit(o.output, &list, |list| {
                table(
                    &["NAME", "TYPE", "RESOURCE TYPES", "STATUS"],
                    list.iter().map(|i| {
                        vec![
                            i.name.clone(),
                            i.integration_type.clone(),
                            i.connected_resource_types.join(", "),
                            i.status.clone().unwrap_or_default(),
                        ]
                    }),
                )
            })
        }
        InventoryCommand::ResourceTypes {
            integration,
            output: o,
        } => {
            let integration = client.find_integration(&integration).await.explained()?;
            let list = client
                .resource_types(Some(&integration.name))
                .await
                .explained()?;
            emit(o.output, &list, |list| {
                table(
                    &["INTEGRATION", "RESOURCE TYPE"],
                    list.iter()
                        .map(|t| vec![t.integration.clone(), t.resource_type.clone()]),
                )
            })
        }
        InventoryCommand::Resources {
            integration,
            resource_type,
            output: o,
        } => {
            let integration = client.find_integration(&integration).await.explained()?;
            check_resource_type(client, &integration.name, &resource_type).await?;
            let list: Vec<_> = client
                .resources(Some(&integration.name))
                .await
                .explained()?
                .into_iter()
                .filter(|r| r.resource_type == resource_type)
                .collect();
            emit(o.output, &list, |list| {
                table(
                    &["ID", "NAME", "TYPE", "TAGS"],
                    list.iter().map(|r| {
                        vec![
                            r.id.clone(),
                            r.name.clone(),
                            r.resource_type.clone(),
                            r.tags
                                .iter()
                                .map(|(k, v)| format!("{k}={v}"))
                                .collect::<Vec<_>>()
                                .join(", "),
                        ]
                    }),
                )
            })
        }
        InventoryCommand::Permissions {
            integration,
            resource_type,
            output: o,
        } => {
            let integration = client.find_integration(&integration).await.explained()?;
            check_resource_type(client, &integration.name, &resource_type).await?;
            let list: Vec<_> = client
                .permissions(Some(&integration.name))
                .await
                .explained()?
                .into_iter()
                .filter(|p| p.resource_type == resource_type)
                .collect();
            emit(o.output, &list, |list| {
                table(
                    &["PERMISSION", "RESOURCE TYPE", "DESCRIPTION"],
                    list.iter().map(|p| {
                        vec![
                            p.permission.clone(),
                            p.resource_type.clone(),
                            p.description.clone().unwrap_or_default(),
                        ]
                    }),
                )
            })
        }
    }
}

// ------------------------------------------------------------------ requests

/// The request list; an `APPROVALS` column (the `all_of` progress) only when a request in it
/// has one.
fn requests_table(list: &[AccessRequest]) -> comfy_table::Table {
    let progress = list.iter().any(|r| r.approval_progress().is_some());
    let mut header = vec![
        "ID",
        "STATUS",
        "REQUESTER",
        "INTEGRATION",
        "RESOURCES",
        "PERMISSION",
        "SESSIONS",
        "CREATED",
    ];
    if progress {
        header.insert(2, "APPROVALS");
    }
    table(
        &header,
        list.iter().map(|r| {
            let mut row = vec![
                r.id.clone(),
                r.status.to_string(),
                r.requester.clone(),
                r.integration.clone(),
                r.resource_ids.join(", "),
                r.permission.clone(),
                r.session_ids.join(", "),
                time(&r.created_at),
            ];
            if progress {
                row.insert(2, r.approval_progress().unwrap_or_default());
            }
            row
        }),
    )
}

fn request_table(r: &AccessRequest) -> comfy_table::Table {
    let mut rows = vec![
        vec!["id".to_owned(), r.id.clone()],
        vec!["status".into(), r.status.to_string()],
        vec!["requester".into(), r.requester.clone()],
        vec!["flow".into(), r.flow.clone()],
        vec!["integration".into(), r.integration.clone()],
        vec!["resource type".into(), r.resource_type.clone()],
        vec!["resources".into(), r.resource_ids.join(", ")],
        vec!["permission".into(), r.permission.clone()],
        vec!["justification".into(), r.justification.clone()],
        vec!["duration".into(), format!("{}s", r.duration_seconds)],
    ];
    if let Some(route) = &r.approval_route {
        rows.push(vec!["approvers".into(), route.to_string()]);
    }
    if let Some(progress) = r.approval_progress() {
        rows.push(vec!["approvals".into(), progress]);
        let by: Vec<String> = r
            .approvals
            .iter()
            .map(|a| format!("{} ({})", a.approver, time(&a.decided_at)))
            .collect();
        if !by.is_empty() {
            rows.push(vec!["approved by".into(), by.join(", ")]);
        }
    }
    if let Some(by) = &r.decided_by {
        rows.push(vec!["decided by".into(), by.clone()]);
    }
    if let Some(reason) = &r.reason {
        rows.push(vec!["reason".into(), reason.clone()]);
    }
    rows.push(vec!["sessions".into(), r.session_ids.join(", ")]);
    rows.push(vec!["created".into(), time(&r.created_at)]);
    rows.push(vec!["updated".into(), time(&r.updated_at)]);
    table(&["FIELD", "VALUE"], rows)
}

async fn requests(ctx: &Context, cmd: RequestsCommand) -> anyhow::Result<()> {
    let client = ctx.client()?;
    match cmd {
        RequestsCommand::Create(args) => create(&client, args).await,
        RequestsCommand::List {
            scope,
            days,
            output: o,
        } => {
            let scope = match scope {
                Scope::Mine => RequestScope::Mine,
                Scope::Approvals => RequestScope::AwaitingMyApproval,
                Scope::All => RequestScope::All,
            };
            let since = days.map(|d| Utc::now() - chrono::Duration::days(i64::from(d)));
            let list: Vec<_> = client
                .requests(scope)
                .await
                .explained()?
                .into_iter()
                .filter(|r| since.is_none_or(|s| r.created_at >= s))
                .collect();
            if list.is_empty() && o.output == Format::Table && scope == RequestScope::Mine {
                eprintln!(
                    "you have no requests{}; those awaiting your approval: apono requests list --scope approvals",
                    if days.is_some() { " in that time" } else { "" }
                );
            }
            emit(o.output, &list, |l| requests_table(l))
        }
        RequestsCommand::Describe { id, output: o } => {
            let r = client.request(&id).await.explained()?;
            emit(o.output, &r, request_table)
        }
        RequestsCommand::Approve {
            id,
            reason,
            output: o,
        } => {
            let r = client.approve(&id, reason.as_deref()).await.explained()?;
            if o.output == Format::Table {
                match r.approval_progress() {
                    Some(progress) if r.status == RequestStatus::Pending => eprintln!(
                        "recorded your approval of request {}: still Pending, {progress}",
                        r.id
                    ),
                    Some(progress) => {
                        eprintln!("approved request {} (now {}): {progress}", r.id, r.status);
                    }
                    None => eprintln!("approved request {} (now {})", r.id, r.status),
                }
                return Ok(());
            }
            emit(o.output, &r, request_table)
        }
        RequestsCommand::Reject {
            id,
            reason,
            output: o,
        } => {
            if reason.trim().is_empty() {
                return Err(usage("--reason must say why"));
            }
            let r = client.reject(&id, &reason).await.explained()?;
            if o.output == Format::Table {
                eprintln!("rejected request {}", r.id);
                return Ok(());
            }
            emit(o.output, &r, request_table)
        }
        RequestsCommand::Revoke {
            id,
            wait,
            timeout,
            output: o,
        } => {
            let timeout = parse_duration(&timeout).explained()?;
            let mut r = client.revoke(&id).await.explained()?;
            if wait {
                let spinner = Spinner::new(&format!("revoking request {id}"));
                r = client
                    .wait_for_request(
                        &id,
                        timeout,
                        POLL,
                        |r| r.status.is_final(),
                        |r| spinner.status(&format!("request {}: {}", r.id, r.status)),
                    )
                    .await
                    .map_err(|e| wait_error(e, &id))?;
                spinner.finish();
                let cache = ctx.key_cache()?;
                let vault_cache = ctx.vault_cache()?;
                for session in &r.session_ids {
                    let s = client.session(session).await.explained()?;
                    if s.status.may_hold_access() {
                        return Err(fail(format!(
                            "session {session} is {}: access may still exist; see apono access list",
                            s.status
                        )));
                    }
                    let _ = cache.remove(session);
                    let _ = vault_cache.remove(session);
                }
            }
            if o.output == Format::Table {
                eprintln!(
                    "request {} {}",
                    r.id,
                    if wait || r.status.is_final() {
                        format!("is {}: access removed", r.status)
                    } else {
                        format!("is {}: revoking (use --wait to wait)", r.status)
                    }
                );
                return Ok(());
            }
            emit(o.output, &r, request_table)
        }
    }
}

fn wait_error(e: ClientError, id: &str) -> anyhow::Error {
    match e {
        ClientError::WaitTimeout {
            status,
            waited_seconds,
            ..
        } => fail(format!(
            "request {id} is still {status} after {waited_seconds}s: check later with apono requests describe {id}"
        )),
        e => crate::context::explain(e),
    }
}

/// Refuses a resource type the integration does not offer, naming the types it does: a
/// typo such as `ssh-servers` is a wrong type, not an unknown resource.
async fn check_resource_type(
    client: &Client,
    integration: &str,
    resource_type: &str,
) -> anyhow::Result<()> {
    let types = client.resource_types(Some(integration)).await.explained()?;
    if types.iter().any(|t| t.resource_type == resource_type) {
        return Ok(());
    }
    let names: Vec<&str> = types.iter().map(|t| t.resource_type.as_str()).collect();
    Err(fail(if names.is_empty() {
        format!("unknown resource type {resource_type:?}: integration {integration} offers none")
    } else {
        format!(
            "unknown resource type {resource_type:?} in integration {integration}: use -t with one of {}",
            names.join(", ")
        )
    }))
}

/// A dry-run problem with what to do about it, chosen by its code (never by its wording).
fn hint(problem: &Problem, max: Option<&str>, bare_seconds: bool) -> String {
    let text = &problem.message;
    match problem.code.as_str() {
        problem_code::JUSTIFICATION_REQUIRED => format!("{text} (add -j JUSTIFICATION)"),
        problem_code::DURATION_OVER_MAX => match problem.max.as_deref().or(max) {
            Some(max) if bare_seconds => {
                format!("{text} (use -d {max} or less; a bare number is seconds)")
            }
            Some(max) => format!("{text} (use -d {max} or less)"),
            None => text.clone(),
        },
        problem_code::NO_MATCHING_FLOW | problem_code::UNKNOWN_PERMISSION => {
            format!("{text} (apono inventory permissions lists what exists)")
        }
        problem_code::UNKNOWN_RESOURCE => {
            format!("{text} (apono inventory resources lists what exists)")
        }
        problem_code::UNKNOWN_INTEGRATION => {
            format!("{text} (apono inventory integrations lists them)")
        }
        _ => text.clone(),
    }
}

pub(crate) async fn create(client: &Client, args: CreateArgs) -> anyhow::Result<()> {
    let timeout = parse_duration(&args.timeout).explained()?;
    if let Some(d) = &args.duration
        && let Err(e) = parse_duration(d)
    {
        // Refused like any other request the dry run would refuse: exit 1, the same words.
        return Err(fail(format!(
            "request not allowed: {e} (use -d such as 90s, 30m or 2h; a bare number is seconds)"
        )));
    }
    let integration = client
        .find_integration(&args.integration)
        .await
        .explained()?;
    check_resource_type(client, &integration.name, &args.resource_type).await?;
    let bare_seconds = args
        .duration
        .as_deref()
        .is_some_and(|d| !d.is_empty() && d.trim().bytes().all(|b| b.is_ascii_digit()));
    let mut news = Vec::new();
    let mut problems = Vec::new();
    let mut approval = Vec::new();
    for permission in &args.permissions {
        let new = NewRequest {
            integration: integration.name.clone(),
            resource_type: args.resource_type.clone(),
            resource_ids: args.resources.clone(),
            permission: permission.clone(),
            justification: args.justification.clone(),
            duration: args.duration.clone(),
        };
        let check = client.dry_run(&new).await.explained()?;
        if !check.allowed {
            problems.extend(
                check
                    .problems
                    .iter()
                    .map(|p| hint(p, check.max_duration.as_deref(), bare_seconds)),
            );
        }
        if check.approval_required {
            approval.push(check.flow.clone().unwrap_or_default());
        }
        news.push(new);
    }
    if !problems.is_empty() {
        problems.dedup();
        return Err(fail(format!(
            "request not allowed: {}",
            problems.join("; ")
        )));
    }
    let mut created = Vec::new();
    for new in &news {
        created.push(client.create_request(new).await.explained()?);
    }
    if !args.no_wait {
        let spinner = Spinner::new("waiting for access");
        let mut done = Vec::new();
        for r in &created {
            let id = r.id.clone();
            let settled = client
                .wait_for_request(&id, timeout, POLL, AccessRequest::is_settled, |r| {
                    spinner.status(&match r.status {
                        RequestStatus::Pending => match r.approval_progress() {
                            Some(progress) => format!("request {}: Pending, {progress}", r.id),
                            None => match &r.approval_route {
                                Some(route) => {
                                    format!("request {}: Pending, waiting for {route}", r.id)
                                }
                                None => {
                                    format!("request {}: Pending, waiting for an approver", r.id)
                                }
                            },
                        },
                        s => format!("request {}: {s}", r.id),
                    })
                })
                .await;
            match settled {
                Ok(r) => done.push(r),
                Err(e) => {
                    spinner.finish();
                    return Err(wait_error(e, &id));
                }
            }
        }
        spinner.finish();
        created = done;
    }
    emit(args.output.output, &created, |list| {
        table(
            &["REQUEST", "STATUS", "SESSIONS"],
            list.iter()
                .map(|r| vec![r.id.clone(), r.status.to_string(), r.session_ids.join(", ")]),
        )
    })?;
    for r in &created {
        match r.status {
            RequestStatus::Rejected => {
                return Err(fail(format!(
                    "request {} rejected by {}: reason {}",
                    r.id,
                    r.decided_by.as_deref().unwrap_or("an approver"),
                    r.reason.as_deref().unwrap_or("(none given)")
                )));
            }
            RequestStatus::Failed => {
                let mut why = String::new();
                for s in &r.session_ids {
                    if let Ok(s) = client.session(s).await
                        && let Some(e) = s.last_error
                    {
                        why = format!(": {e}");
                        break;
                    }
                }
                return Err(fail(format!(
                    "request {} failed{why}: ask an admin to check the connector's log",
                    r.id
                )));
            }
            RequestStatus::Revoked => {
                return Err(fail(format!("request {} was withdrawn or revoked", r.id)));
            }
            RequestStatus::Active if args.output.output == Format::Table => {
                for s in &r.session_ids {
                    eprintln!("use it: apono access use {s}");
                }
            }
            _ if args.no_wait && args.output.output == Format::Table => {
                eprintln!("check it: apono requests describe {}", r.id);
            }
            _ => {}
        }
    }
    Ok(())
}

/// A spinner on stderr when it is a terminal; silent otherwise.
struct Spinner(Option<indicatif::ProgressBar>);

impl Spinner {
    fn new(message: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(Duration::from_millis(100));
        Self(Some(bar))
    }

    fn status(&self, message: &str) {
        if let Some(bar) = &self.0 {
            bar.set_message(message.to_owned());
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

// ------------------------------------------------------------------ access

fn sessions_table(list: &[AccessSession]) -> comfy_table::Table {
    let now = Utc::now();
    table(
        &[
            "ID",
            "REQUEST",
            "STATUS",
            "INTEGRATION",
            "RESOURCE",
            "PERMISSION",
            "ACCOUNT",
            "EXPIRES",
        ],
        list.iter().map(|s| {
            vec![
                s.id.clone(),
                s.request_id.clone(),
                s.status.to_string(),
                s.integration.clone(),
                s.resource_id.clone(),
                s.permission.clone(),
                s.account_name.clone(),
                s.expires_at
                    .as_ref()
                    .map(|at| time_left(at, now))
                    .unwrap_or_default(),
            ]
        }),
    )
}

async fn access(ctx: &Context, cmd: AccessCommand) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let cache = ctx.key_cache()?;
    match cmd {
        AccessCommand::List {
            integration,
            request_id,
            output: o,
        } => {
            let integration = match integration {
                Some(i) => Some(client.find_integration(&i).await.explained()?.name),
                None => None,
            };
            let all = client.sessions(false).await.explained()?;
            for s in &all {
                if !s.status.may_hold_access() {
                    let _ = cache.remove(&s.id);
                }
            }
            let list: Vec<_> = all
                .into_iter()
                .filter(|s| integration.as_ref().is_none_or(|i| &s.integration == i))
                .filter(|s| request_id.as_ref().is_none_or(|r| &s.request_id == r))
                .collect();
            emit(o.output, &list, |l| sessions_table(l))
        }
        AccessCommand::Use {
            session_id,
            output: format,
            run,
            args,
        } => {
            let caches = Caches {
                keys: cache,
                vault: ctx.vault_cache()?,
            };
            use_session(&client, &caches, &session_id, format, run, &args).await
        }
        AccessCommand::ResetCredentials { session_id } => {
            let session = client.reset_credentials(&session_id).await.explained()?;
            let _ = cache.remove(&session.id);
            // The connector issues the credentials in the background; wait for them briefly.
            let issued = client
                .wait_for_session(&session_id, Duration::from_secs(30), POLL, |s| {
                    s.credential_status.as_deref() == Some("new")
                })
                .await
                .explained()?;
            if issued.is_none() {
                eprintln!(
                    "fresh credentials requested; they are not issued yet: run apono access use {session_id} in a moment"
                );
                return Ok(());
            }
            eprintln!(
                "fresh credentials issued: run apono access use {session_id} to see them (once)"
            );
            Ok(())
        }
    }
}

/// A database login as this machine makes it: the vendor's client, its arguments before the
/// caller's, and the environment variable the password travels in (never an argument, which
/// other local users could read in `ps`).
struct DatabaseLogin {
    program: &'static str,
    args: Vec<String>,
    password_env: &'static str,
    env: Vec<(&'static str, String)>,
}

/// The database coordinates of a session's access details (`engine` is `postgresql` or `mysql`).
fn database_login(details: &AccessDetails) -> Option<DatabaseLogin> {
    let text = |key: &str| details.json.get(key).and_then(|v| v.as_str());
    let engine = text("engine")?;
    let host = text("host")?.to_owned();
    let port = details.json.get("port")?.as_u64()?.to_string();
    let user = text("username")?.to_owned();
    let database = text("database").map(str::to_owned);
    match engine {
        "postgresql" => {
            let mut args = vec!["-h".into(), host, "-p".into(), port, "-U".into(), user];
            args.extend(database.into_iter().flat_map(|d| ["-d".to_owned(), d]));
            let env = text("sslmode")
                .map(|mode| vec![("PGSSLMODE", mode.to_owned())])
                .unwrap_or_default();
            Some(DatabaseLogin {
                program: "psql",
                args,
                password_env: "PGPASSWORD",
                env,
            })
        }
        "mysql" => {
            let mut args = vec!["-h".into(), host, "-P".into(), port, "-u".into(), user];
            args.extend(database);
            Some(DatabaseLogin {
                program: "mysql",
                args,
                password_env: "MYSQL_PWD",
                env: Vec::new(),
            })
        }
        _ => None,
    }
}

/// `access use --run` for a database session: the vendor's client with the kept one-time
/// password in its environment variable.
async fn run_database(
    cache: &apono_client::KeyCache,
    session_id: &str,
    login: &DatabaseLogin,
    args: &[String],
) -> anyhow::Result<()> {
    let file = cache.find(session_id).ok_or_else(|| {
        fail(format!(
            "no password for session {session_id} on this machine: run apono access reset-credentials {session_id}, then apono access use {session_id} --run"
        ))
    })?;
    let password = secrecy::SecretString::from(
        std::fs::read_to_string(&file)
            .map_err(|e| fail(format!("cannot read {}: {e}", file.display())))?
            .trim_end_matches('\n')
            .to_owned(),
    );
    let status = tokio::process::Command::new(login.program)
        .args(&login.args)
        .args(args)
        .envs(login.env.iter().map(|(k, v)| (*k, v.as_str())))
        .env(login.password_env, password.expose_secret())
        .status()
        .await
        .map_err(|e| fail(format!("cannot run {}: {e}", login.program)))?;
    if !status.success() {
        return Err(fail(format!(
            "{} exited with {}",
            login.program,
            status
                .code()
                .map_or_else(|| "a signal".to_owned(), |c| format!("status {c}"))
        )));
    }
    Ok(())
}

/// The SSH coordinates of a session's access details, when it is an SSH login (database
/// sessions, which name their `engine`, have coordinates too).
fn ssh_target(details: &AccessDetails) -> Option<(String, u16, String)> {
    if details.json.contains_key("engine") {
        return None;
    }
    let host = details.json.get("host")?.as_str()?.to_owned();
    let port = u16::try_from(details.json.get("port")?.as_u64()?).ok()?;
    let user = details.json.get("username")?.as_str()?.to_owned();
    Some((host, port, user))
}

/// An SSH login as this machine makes it: the session's coordinates, its cached one-time key
/// and, when the connector pinned the server's host key, a `known_hosts` file holding only it.
pub(crate) struct SshLogin {
    host: String,
    port: u16,
    user: String,
    key: PathBuf,
    known_hosts: Option<PathBuf>,
}

impl SshLogin {
    /// The arguments of `ssh` before the remote command: the key, only that key, the server's
    /// own host key checked strictly (a different key is refused, no question asked), the port
    /// and the destination.
    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "-i".to_owned(),
            self.key.display().to_string(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
        ];
        if let Some(file) = &self.known_hosts {
            args.extend([
                "-o".into(),
                format!("UserKnownHostsFile={}", file.display()),
                "-o".into(),
                "StrictHostKeyChecking=yes".into(),
            ]);
        }
        args.extend([
            "-p".into(),
            self.port.to_string(),
            format!("{}@{}", self.user, self.host),
        ]);
        args
    }

    /// The command line to paste into a shell.
    fn command_line(&self) -> String {
        let mut line = "ssh".to_owned();
        for arg in self.args() {
            line.push(' ');
            line.push_str(&shell_word(&arg));
        }
        line
    }
}

/// `word` quoted for a POSIX shell when it needs it.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=@:+,%~".contains(c));
    if plain && !word.starts_with('~') {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// When access ends (after "access"), and why a login's "Your account will expire in 1 day" does
/// not contradict it: the key's `expiry-time` is exact, the account's expiry date only a
/// day-granular backstop.
fn ends_note(session: &AccessSession) -> Option<String> {
    session.expires_at.as_ref().map(|until| {
        format!(
            "ends at {}: the key stops working then, to the second. If the server says \"Your account will expire in 1 day\", that is only the account's day-granular backstop.",
            time_left(until, Utc::now())
        )
    })
}

/// The integration's `custom_access_details`, if it has any (none when it cannot be read).
async fn custom_details(client: &Client, session: &AccessSession) -> Option<String> {
    client
        .integrations()
        .await
        .ok()?
        .into_iter()
        .find(|i| i.name == session.integration)?
        .custom_access_details
        .filter(|c| !c.trim().is_empty())
}

/// Where `use_session` keeps what it is shown once: private keys, and vault tokens (which
/// `apono vault` then finds).
pub(crate) struct Caches {
    pub(crate) keys: apono_client::KeyCache,
    pub(crate) vault: apono_client::KeyCache,
}

pub(crate) async fn use_session(
    client: &Client,
    caches: &Caches,
    session_id: &str,
    format: UseFormat,
    run: bool,
    args: &[String],
) -> anyhow::Result<()> {
    let cache = &caches.keys;
    let session = client.session(session_id).await.explained()?;
    if session.status != GrantStatus::Active {
        let _ = cache.remove(session_id);
        let _ = caches.vault.remove(session_id);
        return Err(fail(match session.status {
            GrantStatus::Pending | GrantStatus::Granting => format!(
                "session {session_id} is {}: access is not ready yet, try again in a moment",
                session.status
            ),
            s => format!(
                "session {session_id} is {s}: access has ended; request it again with apono requests create"
            ),
        }));
    }
    let details = client.access_details(session_id).await.explained()?;
    if let Some(token) = details.credential(apono_client::VAULT_TOKEN)
        && details.json.contains_key("vault_address")
    {
        apono_client::remember_vault_token(&caches.vault, &session, token).explained()?;
    }
    if let Some(db) = database_login(&details) {
        // Kept (`0600`, until the session ends) the one time it is shown, for `--run` later.
        if let Some(password) = details.credential("password") {
            cache
                .store(session_id, password, session.expires_at)
                .explained()?;
        }
        if run {
            return run_database(cache, session_id, &db, args).await;
        }
    }
    let mut key_file: Option<PathBuf> = None;
    if let Some(key) = details.credential("private_key") {
        key_file = Some(
            cache
                .store(session_id, key, session.expires_at)
                .explained()?,
        );
    } else if let Some(path) = cache.find(session_id) {
        key_file = Some(path);
    }
    let masked = matches!(details.credentials, Credentials::Masked(_));
    if masked && key_file.is_none() && !run {
        eprintln!(
            "note: the one-time credentials were already shown; run apono access reset-credentials {session_id} for new ones"
        );
    }
    let ssh = ssh_target(&details);
    // The server's host key, written beside the key with the same lifetime.
    let known_hosts = match details.json.get("known_hosts").and_then(|v| v.as_str()) {
        Some(line) if key_file.is_some() => {
            Some(cache.store_known_hosts(session_id, line).explained()?)
        }
        _ => None,
    };
    let login = match (&ssh, &key_file) {
        (Some((host, port, user)), Some(key)) => Some(SshLogin {
            host: host.clone(),
            port: *port,
            user: user.clone(),
            key: key.clone(),
            known_hosts,
        }),
        _ => None,
    };
    if run {
        let Some(login) = &login else {
            return Err(fail(if ssh.is_none() {
                format!(
                    "--run supports SSH and database sessions; run the command of apono access use {session_id} -o cli yourself"
                )
            } else {
                format!(
                    "no private key for session {session_id} on this machine: run apono access reset-credentials {session_id}, then apono access use {session_id} --run"
                )
            }));
        };
        if let Some(custom) = custom_details(client, &session).await {
            eprintln!("{custom}");
        }
        if let Some(note) = ends_note(&session) {
            eprintln!("note: access {note}");
        }
        let status = tokio::process::Command::new("ssh")
            .args(login.args())
            // After the destination: OpenSSH still reads options there (`-o …`), and the first
            // other word starts the remote command, as with `ssh user@host COMMAND`.
            .args(args)
            .status()
            .await
            .map_err(|e| fail(format!("cannot run ssh: {e}")))?;
        if !status.success() {
            return Err(fail(format!(
                "ssh exited with {}",
                status
                    .code()
                    .map_or_else(|| "a signal".to_owned(), |c| format!("status {c}"))
            )));
        }
        return Ok(());
    }
    match format {
        UseFormat::Json => {
            let mut value = details.to_json_exposing_credentials();
            value["key_file"] = key_file
                .as_ref()
                .map(|p| serde_json::Value::from(p.display().to_string()))
                .unwrap_or(serde_json::Value::Null);
            if let Some(login) = &login {
                // The connector cannot know where this machine keeps the key; this can.
                value["cli"] = login.command_line().into();
                value["known_hosts_file"] = login
                    .known_hosts
                    .as_ref()
                    .map(|p| serde_json::Value::from(p.display().to_string()))
                    .unwrap_or(serde_json::Value::Null);
            }
            line(serde_json::to_string_pretty(&value)?);
        }
        UseFormat::Cli => match &login {
            Some(login) => line(login.command_line()),
            None => match &details.cli {
                Some(cli) => line(cli),
                None => {
                    return Err(fail(format!(
                        "session {session_id} has no command; try -o instructions"
                    )));
                }
            },
        },
        UseFormat::Link => match &details.link {
            Some(link) => line(link),
            None => {
                return Err(fail(format!(
                    "session {session_id} has no link; try -o instructions"
                )));
            }
        },
        UseFormat::Instructions => {
            if let Some(login) = &login {
                let host_key = match &login.known_hosts {
                    Some(file) => format!(", the server's host key in {}", file.display()),
                    None => String::new(),
                };
                line(format!(
                    "The private key is saved in {} (mode 0600){host_key} until the access ends. Connect with:\n\n  {}\n\nor run: apono access use {session_id} --run",
                    login.key.display(),
                    login.command_line()
                ));
                if let Some(note) = ends_note(&session) {
                    line(format!("\nAccess {note}"));
                }
                if let Some(custom) = custom_details(client, &session).await {
                    line(format!("\n{custom}"));
                }
            } else {
                line(&details.instructions.plain);
            }
            if let Credentials::Shown(map) = &details.credentials {
                for (name, value) in map.iter().filter(|(n, _)| n.as_str() != "private_key") {
                    line(format!("{name}: {}", value.expose_secret()));
                }
                if map.keys().any(|n| n != "private_key") {
                    eprintln!(
                        "note: these credentials are shown only once; apono access reset-credentials {session_id} issues new ones"
                    );
                }
            }
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ vault

async fn open_vault(ctx: &Context, args: &VaultArgs) -> anyhow::Result<VaultAccess> {
    let ca_cert_pem = match &args.ca_cert {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| usage(format!("cannot read --ca-cert {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let options = VaultOptions {
        session_id: args.session.clone(),
        ca_cert_pem,
    };
    VaultAccess::open(
        &ctx.client()?,
        &ctx.vault_cache()?,
        &args.vault_id,
        &options,
    )
    .await
    .explained()
}

fn secret_value(arg: &ValueArg) -> anyhow::Result<SecretValue> {
    let text = if arg.value == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| fail(format!("reading the value from stdin: {e}")))?;
        text
    } else {
        arg.value.clone()
    };
    let value = SecretValue::from_json(text.as_bytes()).map_err(|e| {
        usage(format!(
            "--value must be a JSON object of keys and values, such as '{{\"username\":\"admin\"}}' ({e})"
        ))
    })?;
    if value.is_empty() {
        return Err(usage("--value holds no key"));
    }
    Ok(value)
}

fn written(format: Format, done: &VaultWrite, what: &str) -> anyhow::Result<()> {
    if format == Format::Table {
        match done.version {
            Some(v) => eprintln!("{what} secret {} (version {v})", done.path),
            None => eprintln!("{what} secret {} with all its versions", done.path),
        }
        return Ok(());
    }
    emit(format, done, |_| table(&[], Vec::new()))
}

async fn vault(ctx: &Context, cmd: VaultCommand) -> anyhow::Result<()> {
    match cmd {
        VaultCommand::List { vault, path } => {
            let access = open_vault(ctx, &vault).await?;
            let list = access
                .list(path.as_deref().unwrap_or(""))
                .await
                .explained()?;
            emit(vault.output.output, &list, |l| {
                table(&["PATH"], l.iter().map(|p| vec![p.clone()]))
            })
        }
        VaultCommand::Fetch { vault, path } => {
            let access = open_vault(ctx, &vault).await?;
            let secret = access.fetch(&path).await.explained()?;
            emit(vault.output.output, &secret, |s| {
                table(
                    &["KEY", "VALUE"],
                    s.data
                        .iter()
                        .map(|(k, v)| vec![k.to_owned(), v.expose_secret().to_owned()]),
                )
            })
        }
        VaultCommand::Create { vault, path, value } => {
            let value = secret_value(&value)?;
            let access = open_vault(ctx, &vault).await?;
            let done = access.create(&path, &value).await.explained()?;
            written(vault.output.output, &done, "created")
        }
        VaultCommand::Update { vault, path, value } => {
            let value = secret_value(&value)?;
            let access = open_vault(ctx, &vault).await?;
            let done = access.update(&path, &value).await.explained()?;
            written(vault.output.output, &done, "updated")
        }
        VaultCommand::Delete { vault, path } => {
            let access = open_vault(ctx, &vault).await?;
            let done = access.delete(&path).await.explained()?;
            written(vault.output.output, &done, "deleted")
        }
    }
}

// ------------------------------------------------------------------ audit

async fn tokens(client: &Client, cmd: TokensCommand) -> anyhow::Result<()> {
    match cmd {
        TokensCommand::List { user, all, output } => {
            let tokens = client.tokens(user.as_deref(), all).await.explained()?;
            emit(output.output, &tokens, |list| {
                table(
                    &["ID", "USER", "NAME", "STATUS", "EXPIRES", "LAST USED"],
                    list.iter().map(|t| {
                        vec![
                            t.id.clone(),
                            t.user.clone(),
                            t.name.clone(),
                            t.status.clone(),
                            t.expires_at.clone(),
                            t.last_used_at.clone().unwrap_or_else(|| "-".into()),
                        ]
                    }),
                )
            })
        }
        TokensCommand::Revoke { id } => {
            let token = client.revoke_token(&id).await.explained()?;
            line(format!(
                "token {} of {} is {}",
                token.id, token.user, token.status
            ));
            Ok(())
        }
    }
}

async fn audit(client: &Client, since: Option<&str>, format: Format) -> anyhow::Result<()> {
    let since_ms = match since {
        None => None,
        Some(text) => Some(match chrono::DateTime::parse_from_rfc3339(text) {
            Ok(at) => at.timestamp_millis(),
            Err(_) => {
                let d = parse_duration(text).map_err(|_| {
                    usage(format!(
                        "--since {text:?} is neither a duration such as 24h nor an RFC 3339 time"
                    ))
                })?;
                Utc::now().timestamp_millis() - i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
            }
        }),
    };
    let mut records = Vec::new();
    let mut after = 0;
    loop {
        let page = client.audit(after, 1000).await.explained()?;
        let n = page.len();
        after = page.last().map_or(after, |r| r.seq);
        records.extend(
            page.into_iter()
                .filter(|r| since_ms.is_none_or(|s| r.at >= s)),
        );
        if n < 1000 {
            break;
        }
    }
    emit(format, &records, |list| {
        table(
            &["SEQ", "AT", "ACTOR", "ACTION", "SUBJECT", "OUTCOME"],
            list.iter().map(|r| {
                vec![
                    r.seq.to_string(),
                    chrono::DateTime::from_timestamp_millis(r.at)
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_default(),
                    r.actor.clone(),
                    r.action.clone(),
                    r.subject.clone(),
                    r.outcome.clone(),
                ]
            }),
        )
    })
}
