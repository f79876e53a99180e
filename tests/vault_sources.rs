//! Through the binary: `HASHICORP_VAULT_CONFIG` entries of the `from_secret_store` form, one per
//! source Apono documents (AWS, GCP, Azure, Kubernetes), each pinned to its own kv mount of a
//! real OpenBao. The vault's address and token live only in the source: moto for AWS, the test
//! kit's GCP, Azure and Kubernetes fakes (each checked by the vendor's client in the test kit).
//! Four `ssh` integrations read the admin key of one real sshd from those four mounts; a grant
//! through each logs in, so each chain source → vault → target worked, configured only by the
//! environment variables the connector documents.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use apono_e2e::{ConnectorConfig, call, ssh_login, ssh_server};
use apono_testkit::fakes::{FakeAzureKeyVault, FakeGcpSecretManager, FakeKubernetes};
use apono_testkit::{Moto, OpenBao, SshServer};
use serde_json::json;

const SOURCES: [&str; 4] = ["aws", "gcp", "azure", "k8s"];
const VAULT_HOST: &str = "apono-e2e.vault.azure.net";
const TENANT: &str = "00000000-0000-0000-0000-0000000000e2";
const PROJECT: &str = "apono-e2e";

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output()?;
    ensure!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_connection_from_each_secret_store() -> Result<()> {
    let server = SshServer::start()?;
    let bao = OpenBao::start()?;
    let moto = Moto::start()?;
    let kube = FakeKubernetes::start()?;
    let azure = FakeAzureKeyVault::start_for(TENANT, &[VAULT_HOST, "127.0.0.1"])?;
    let gcp = FakeGcpSecretManager::start()?;
    let dir = tempfile::tempdir()?;

    // The admin key, in one kv mount per source; the vault's connection, only in the sources.
    let key_b64 = data_encoding::BASE64.encode(server.admin_private_key().as_bytes());
    for source in SOURCES {
        let mount = format!("kv-{source}");
        run(bao
            .cli()
            .args(["secrets", "enable", "-version=2", "-path", &mount, "kv"]))?;
        run(bao.cli().args([
            "kv",
            "put",
            &format!("{mount}/ssh"),
            &format!("base64_private_key={key_b64}"),
        ]))?;
    }
    let connection = json!({ "address": bao.address(), "token": bao.root_token() }).to_string();
    run(Command::new(moto.python_path()).envs(moto.aws_env()).args([
        "-c",
        "import boto3, sys; boto3.client('secretsmanager').create_secret(Name='vault-conn', \
             SecretString=sys.argv[1], Tags=[{'Key': 'apono-connector-read', 'Value': 'true'}])",
        &connection,
    ]))?;
    gcp.add_secret_version(PROJECT, "vault-conn", connection.clone());
    azure.add_client("connector-app", "connector-secret");
    azure.set_secret("vault-conn", &connection);
    kube.add_token("connector-token");
    kube.put_secret(
        "apono",
        "vault-conn",
        &[("apono-connector-read", "true")],
        [
            ("address", bao.address().as_bytes().to_vec()),
            ("token", bao.root_token().as_bytes().to_vec()),
        ],
    );

    let azure_port = azure
        .endpoint()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let vault_config = json!([
        { "from_secret_store": "AWS", "region": Moto::REGION, "secret_id": "vault-conn", "secret_engine": "kv-aws" },
        { "from_secret_store": "GCP", "project": PROJECT, "secret_id": "vault-conn", "secret_engine": "kv-gcp" },
        { "from_secret_store": "AZURE", "vault_url": format!("https://{VAULT_HOST}:{azure_port}"), "name": "vault-conn", "secret_engine": "kv-azure" },
        { "from_secret_store": "KUBERNETES", "namespace": "apono", "name": "vault-conn", "secret_engine": "kv-k8s" },
    ]);
    let mut template = String::from(
        r#"
[connector]
listen = "{listen}"
data_dir = "{data}"

[[users]]
email = "alice@example.com"
groups = ["developers"]
"#,
    );
    for source in SOURCES {
        template.push_str(&format!(
            "\n[[integrations]]\nname = \"via-{source}\"\ntype = \"ssh\"\n\
             secret_store = {{ hashicorp_vault = {{ secret_engine = \"kv-{source}\", path = \"ssh\" }} }}\n\
             config = {{ servers = [{}] }}\n",
            ssh_server(&server, "web-1", "")
        ));
    }
    template.push_str(&format!(
        "\n[[access_flows]]\nname = \"dev\"\ntrigger = \"automatic\"\n\
         requestors = {{ groups = [\"developers\"] }}\ngrant_duration = \"1h\"\ntargets = [{}]\n",
        SOURCES
            .iter()
            .map(|s| format!(
                r#"{{ integration = "via-{s}", resource_type = "ssh-server", permissions = ["Default"] }}"#
            ))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    let mut config = ConnectorConfig::write(dir.path(), &template)?;
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters:\n- name: fake\n  cluster:\n    server: {}\n\
             users:\n- name: connector\n  user:\n    token: connector-token\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: connector\n    namespace: apono\n",
            kube.url()
        ),
    )?;
    let gcp_key = dir.path().join("gcp-key.json");
    std::fs::write(
        &gcp_key,
        gcp.service_account_key()
            .key_file_json(PROJECT, &gcp.token_uri()),
    )?;
    let ca = dir.path().join("azure-ca.pem");
    std::fs::write(&ca, azure.ca().ca_pem())?;
    for (key, value) in moto.aws_env() {
        config.env(key, &value);
    }
    for (key, value) in [
        ("HASHICORP_VAULT_CONFIG", vault_config.to_string()),
        ("KUBECONFIG", kubeconfig.display().to_string()),
        ("AZURE_TENANT_ID", TENANT.to_owned()),
        ("AZURE_CLIENT_ID", "connector-app".to_owned()),
        ("AZURE_CLIENT_SECRET", "connector-secret".to_owned()),
        ("AZURE_AUTHORITY_HOST", azure.endpoint()),
        // The Azure fake's test CA, as the system's roots (rustls-native-certs reads it).
        ("SSL_CERT_FILE", ca.display().to_string()),
        (
            "GOOGLE_APPLICATION_CREDENTIALS",
            gcp_key.display().to_string(),
        ),
        (apono_server::GCP_ENDPOINT_OVERRIDE_ENV, gcp.endpoint()),
    ] {
        config.env(key, &value);
    }
    config.hosts(&[VAULT_HOST])?;

    let token = config.token("alice@example.com")?;
    let connector = config.start()?;
    let base = format!("{}/api/v1", connector.url);
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while call(&client, "GET", &format!("{base}/resources"), &token, None)
        .await?
        .as_array()
        .is_none_or(|a| a.len() < SOURCES.len())
    {
        ensure!(
            Instant::now() < deadline,
            "no resources: {}",
            connector.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for source in SOURCES {
        let request = call(
            &client,
            "POST",
            &format!("{base}/access-requests"),
            &token,
            Some(&json!({
                "integration": format!("via-{source}"), "resource_type": "ssh-server",
                "resource_ids": ["web-1"], "permission": "Default"
            })),
        )
        .await?;
        let id = request["id"].as_str().context("request id")?;
        let session = loop {
            let r = call(
                &client,
                "GET",
                &format!("{base}/access-requests/{id}"),
                &token,
                None,
            )
            .await?;
            match r["status"].as_str() {
                Some("Active") => {
                    break r["session_ids"][0].as_str().context("session")?.to_owned();
                }
                Some("Pending" | "Granting") if Instant::now() < deadline => {}
                other => bail!(
                    "via-{source}: request went {other:?}: {r}\n{}",
                    connector.log_text()
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let details = call(
            &client,
            "GET",
            &format!("{base}/access-sessions/{session}/access-details"),
            &token,
            None,
        )
        .await?;
        let key = dir.path().join(format!("id-{source}"));
        std::fs::write(
            &key,
            details["credentials"]["private_key"]
                .as_str()
                .context("private key")?,
        )?;
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let user = details["json"]["username"].as_str().context("username")?;
        ensure!(ssh_login(&server, &key, user)?, "via-{source}: login");
    }
    // Each source was asked for the connection (moto's own log is not needed: its mount is
    // reachable through no other entry).
    let secret_reads = |paths: Vec<String>, what: &str| paths.iter().any(|p| p.contains(what));
    ensure!(secret_reads(
        gcp.requests()
            .into_iter()
            .map(|r| r.path_and_query)
            .collect(),
        "secrets/vault-conn"
    ));
    ensure!(secret_reads(
        azure
            .requests()
            .into_iter()
            .map(|r| r.path_and_query)
            .collect(),
        "/secrets/vault-conn"
    ));
    ensure!(secret_reads(
        kube.requests()
            .into_iter()
            .map(|r| r.path_and_query)
            .collect(),
        "/secrets/vault-conn"
    ));
    Ok(())
}
