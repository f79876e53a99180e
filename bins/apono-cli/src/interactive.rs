//! `apono` without arguments on a terminal: pick request new access or connect to a session.

use apono_client::{GrantStatus, NewRequest, Problem, parse_duration, problem_code};
use console::Term;
use dialoguer::theme::{ColorfulTheme, Theme};
use dialoguer::{Input, MultiSelect, Select};

use crate::cli::{CreateArgs, Format, OutputArg, UseFormat};
use crate::commands;
use crate::context::{Context, Explain, fail};

fn pick(prompt: &str, items: &[String]) -> anyhow::Result<usize> {
    if items.is_empty() {
        return Err(fail(format!("{prompt}: nothing to choose from")));
    }
    Select::with_theme(&ColorfulTheme::default())
        .with_prompt(prompt)
        .items(items)
        .default(0)
        .interact()
        .map_err(|e| fail(format!("cancelled: {e}")))
}

pub(crate) async fn run(ctx: &Context) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let choice = pick(
        "What do you want to do?",
        &[
            "Request new access".to_owned(),
            "Connect to an active session".to_owned(),
        ],
    )?;
    if choice == 1 {
        let sessions: Vec<_> = client
            .sessions(false)
            .await
            .explained()?
            .into_iter()
            .filter(|s| s.status == GrantStatus::Active)
            .collect();
        if sessions.is_empty() {
            return Err(fail(
                "no active session: choose Request new access, or run apono requests create",
            ));
        }
        let labels: Vec<String> = sessions
            .iter()
            .map(|s| {
                format!(
                    "{} — {} {} on {}/{}",
                    s.id, s.permission, s.account_name, s.integration, s.resource_id
                )
            })
            .collect();
        let s = &sessions[pick("Session", &labels)?];
        let caches = commands::Caches {
            keys: ctx.key_cache()?,
            vault: ctx.vault_cache()?,
        };
        return commands::use_session(&client, &caches, &s.id, UseFormat::Instructions, true, &[])
            .await;
    }
    let integrations = client.integrations().await.explained()?;
    let names: Vec<String> = integrations
        .iter()
        .map(|i| format!("{} ({})", i.name, i.integration_type))
        .collect();
    let integration = &integrations[pick("Integration", &names)?];
    let types: Vec<String> = client
        .resource_types(Some(&integration.name))
        .await
        .explained()?
        .into_iter()
        .map(|t| t.resource_type)
        .collect();
    let resource_type = types[pick("Resource type", &types)?].clone();
    let resources: Vec<_> = client
        .resources(Some(&integration.name))
        .await
        .explained()?
        .into_iter()
        .filter(|r| r.resource_type == resource_type)
        .collect();
    if resources.is_empty() {
        return Err(fail(format!(
            "{} has no {resource_type} resources",
            integration.name
        )));
    }
    let labels: Vec<String> = resources
        .iter()
        .map(|r| format!("{} ({})", r.id, r.name))
        .collect();
    let chosen = pick_resources(&labels)?;
    let resource_ids: Vec<String> = chosen.iter().map(|&i| resources[i].id.clone()).collect();
    let permissions: Vec<String> = client
        .permissions(Some(&integration.name))
        .await
        .explained()?
        .into_iter()
        .filter(|p| p.resource_type == resource_type)
        .map(|p| p.permission)
        .collect();
    let mut new = NewRequest {
        integration: integration.name.clone(),
        resource_type: resource_type.clone(),
        resource_ids,
        permission: String::new(),
        justification: None,
        duration: None,
    };
    // What the flow asks for, learnt from a dry run before asking: its maximum duration and
    // whether a justification is required. A permission no flow grants is picked again.
    let check = loop {
        new.permission = permissions[pick("Permission", &permissions)?].clone();
        let check = client.dry_run(&new).await.explained()?;
        let blocking: Vec<&Problem> = check
            .problems
            .iter()
            .filter(|p| !ANSWERABLE.contains(&p.code.as_str()))
            .collect();
        if blocking.is_empty() {
            break check;
        }
        let why = blocking
            .iter()
            .map(|p| p.message.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        if permissions.len() < 2 {
            return Err(fail(format!("request not allowed: {why}")));
        }
        retry(&format!("{why}: pick another permission"));
    };
    let required = check
        .problems
        .iter()
        .any(|p| p.is(problem_code::JUSTIFICATION_REQUIRED));
    let max = check.max_duration.clone();
    // Justification, then duration, each checked by a dry run as it is given.
    loop {
        let answer = ask(
            if required {
                "Justification (required)"
            } else {
                "Justification (optional)"
            },
            None,
        )?;
        let answer = answer.trim();
        if answer.is_empty() && required {
            retry("this access flow requires a justification: type why you need the access");
            continue;
        }
        new.justification = Some(answer.to_owned()).filter(|j| !j.is_empty());
        let check = client.dry_run(&new).await.explained()?;
        match check
            .problems
            .iter()
            .find(|p| JUSTIFICATION.contains(&p.code.as_str()))
        {
            Some(p) => retry(&format!("{}: type the justification again", p.message)),
            None => break,
        }
    }
    let duration_prompt = match &max {
        Some(max) => format!("Duration (max {max})"),
        None => "Duration".to_owned(),
    };
    let check = loop {
        let answer = ask(&duration_prompt, max.as_deref())?;
        let answer = answer.trim();
        let or_less = match &max {
            Some(max) => format!("{max} or less"),
            None => "the access flow's maximum or less".to_owned(),
        };
        if !answer.is_empty() && parse_duration(answer).is_err() {
            retry(&format!(
                "{answer:?} is not a duration: type one such as 30m or 1h, {or_less}"
            ));
            continue;
        }
        new.duration = Some(answer.to_owned()).filter(|d| !d.is_empty());
        let check = client.dry_run(&new).await.explained()?;
        match check
            .problems
            .iter()
            .find(|p| DURATION.contains(&p.code.as_str()))
        {
            Some(p) => {
                let or_less = p
                    .max
                    .as_deref()
                    .or(max.as_deref())
                    .map_or(or_less, |m| format!("{m} or less"));
                retry(&format!("{}: type {or_less}", p.message));
            }
            None => break check,
        }
    };
    if !check.allowed {
        let why = check
            .problems
            .iter()
            .map(|p| p.message.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(fail(format!("request not allowed: {why}")));
    }
    let args = CreateArgs {
        integration: new.integration,
        resource_type: new.resource_type,
        resources: new.resource_ids,
        permissions: vec![new.permission],
        justification: new.justification,
        duration: new.duration,
        no_wait: false,
        timeout: "10m".into(),
        output: OutputArg {
            output: Format::Table,
        },
    };
    commands::create(&client, args).await
}

/// Problem codes the picker asks about after the permission: they do not stop the flow.
const ANSWERABLE: [&str; 4] = [
    problem_code::JUSTIFICATION_REQUIRED,
    "justification_too_long",
    problem_code::DURATION_OVER_MAX,
    problem_code::INVALID_DURATION,
];
/// Problem codes the justification prompt asks again for.
const JUSTIFICATION: [&str; 2] = [
    problem_code::JUSTIFICATION_REQUIRED,
    "justification_too_long",
];
/// Problem codes the duration prompt asks again for.
const DURATION: [&str; 2] = [
    problem_code::DURATION_OVER_MAX,
    problem_code::INVALID_DURATION,
];

/// The resources to request: at least one; the only one is preselected.
fn pick_resources(labels: &[String]) -> anyhow::Result<Vec<usize>> {
    let preselected = vec![labels.len() == 1; labels.len()];
    loop {
        let chosen = MultiSelect::with_theme(&ColorfulTheme::default())
            .with_prompt("Resources (space selects, enter confirms)")
            .items(labels)
            .defaults(&preselected)
            .interact()
            .map_err(|e| fail(format!("cancelled: {e}")))?;
        if !chosen.is_empty() {
            return Ok(chosen);
        }
        retry("no resource selected: press space on at least one, then enter");
    }
}

/// One line of text; `default` is shown in brackets and taken on a bare Enter.
fn ask(prompt: &str, default: Option<&str>) -> anyhow::Result<String> {
    let theme = ColorfulTheme::default();
    let mut input = Input::<String>::with_theme(&theme)
        .with_prompt(prompt)
        .allow_empty(true);
    if let Some(default) = default {
        input = input.default(default.to_owned());
    }
    input
        .interact_text()
        .map_err(|e| fail(format!("cancelled: {e}")))
}

/// Says what was wrong with an answer before the question is asked again.
fn retry(message: &str) {
    let theme = ColorfulTheme::default();
    let mut line = String::new();
    // Writing to a String cannot fail.
    let _ = theme.format_error(&mut line, message);
    let _ = Term::stderr().write_line(&line);
}
