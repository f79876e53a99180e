use std::process::Command;

use anyhow::ensure;
use apono_testkit::Moto;

use crate::stdout_of;

const SCRIPT: &str = r#"
import boto3
client = boto3.client("secretsmanager")
client.create_secret(Name="apono/smoke", SecretString="s3cret")
print(client.get_secret_value(SecretId="apono/smoke")["SecretString"])
"#;

#[test]
fn secrets_manager_round_trips_through_boto3() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    ensure!(moto.endpoint_url() == format!("http://127.0.0.1:{}", moto.port()));
    let mut python = Command::new(moto.python_path());
    python.args(["-c", SCRIPT]).envs(moto.aws_env());
    ensure!(stdout_of(&mut python)? == "s3cret");
    Ok(())
}
