//! `deploy/aws/iam-policy.json` on a real moto server enforcing IAM
//! (`tests/python/aws_iam_policy.py`): moto accepts the document, and a principal holding only
//! it is refused every action but reading (listing, creating, writing, tagging and deleting
//! secrets, IAM). moto does not evaluate `secretsmanager:ResourceTag` conditions, so the tag
//! guard itself is not proven by moto; the connector's AWS store enforces the same tag on its
//! own (`apono-secrets`, tested against moto).

use anyhow::{Context, Result, ensure};
use apono_e2e::deploy::repo_root;
use apono_testkit::Moto;

#[test]
#[allow(clippy::print_stdout)] // moto's answers, for the record
fn the_connector_policy_allows_nothing_but_reading_on_moto() -> Result<()> {
    let moto = Moto::start_enforcing_iam(6)?;
    let args = serde_json::json!({
        "endpoint": moto.endpoint_url(),
        "policy": repo_root().join("deploy/aws/iam-policy.json"),
    });
    let out = std::process::Command::new(moto.python_path())
        .arg(repo_root().join("tests/python/aws_iam_policy.py"))
        .arg(args.to_string())
        .output()
        .context("running tests/python/aws_iam_policy.py")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && stdout.lines().any(|l| l == "ok"),
        "the policy check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{}", stdout.lines().last().unwrap_or_default());
    Ok(())
}
