//! `apono` without arguments on a terminal: pick request new access or connect to a session.

use apono_client::GrantStatus;
use dialoguer::theme::ColorfulTheme;
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
    let chosen = MultiSelect::with_theme(&ColorfulTheme::default())
        .with_prompt("Resources (space selects, enter confirms)")
        .items(&labels)
        .interact()
        .map_err(|e| fail(format!("cancelled: {e}")))?;
    if chosen.is_empty() {
        return Err(fail("no resource selected"));
    }
    let permissions: Vec<String> = client
        .permissions(Some(&integration.name))
        .await
        .explained()?
        .into_iter()
        .filter(|p| p.resource_type == resource_type)
        .map(|p| p.permission)
        .collect();
    let permission = permissions[pick("Permission", &permissions)?].clone();
    let justification: String = Input::with_theme(&ColorfulTheme::default())
        .with_prompt("Justification")
        .allow_empty(true)
        .interact_text()
        .map_err(|e| fail(format!("cancelled: {e}")))?;
    let duration: String = Input::with_theme(&ColorfulTheme::default())
        .with_prompt("Duration (empty: the access flow's maximum)")
        .allow_empty(true)
        .interact_text()
        .map_err(|e| fail(format!("cancelled: {e}")))?;
    let args = CreateArgs {
        integration: integration.name.clone(),
        resource_type,
        resources: chosen
            .into_iter()
            .map(|i| resources[i].id.clone())
            .collect(),
        permissions: vec![permission],
        justification: Some(justification).filter(|j| !j.trim().is_empty()),
        duration: Some(duration).filter(|d| !d.trim().is_empty()),
        no_wait: false,
        timeout: "10m".into(),
        output: OutputArg {
            output: Format::Table,
        },
    };
    commands::create(&client, args).await
}
