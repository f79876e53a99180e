//! The container image (`deploy/Dockerfile`'s runtime stage, built by
//! `scripts/build-image.sh` from this workspace's binaries on a debootstrap Debian base) run
//! with podman: read-only root, `/healthz` and the HEALTHCHECK, the refusals of a missing or
//! unwritable data directory, a grant and its revoke on the test sshd, and the connector started
//! with exactly the files and environment the Helm chart renders.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use apono_e2e::deploy::{
    Container, DeployTools, data_dir_for_image, free_port, repo_root, run, run_once, test_image,
};
use apono_e2e::{call, ssh_login, ssh_secret_store, ssh_server};
use apono_testkit::SshServer;
use serde_json::{Value, json};

fn s(text: impl Into<String>) -> String {
    text.into()
}

fn mount(host: &Path, container: &str, options: &str) -> String {
    format!("{}:{container}{options}", host.display())
}

#[test]
fn image_is_non_root_read_only_healthy_and_names_a_bad_data_dir() -> Result<()> {
    let image = test_image()?;
    let tools = DeployTools::get()?;
    let inspect: Value = serde_json::from_str(&run(
        tools.podman()?.args(["image", "inspect", &image]),
        "podman image inspect",
    )?)?;
    let config = &inspect[0]["Config"];
    ensure!(config["User"] == "10001:10001", "{config}");
    ensure!(
        config["Entrypoint"] == json!(["/usr/local/bin/apono-connector"]),
        "{config}"
    );
    for label in [
        "org.opencontainers.image.version",
        "org.opencontainers.image.source",
        "org.opencontainers.image.licenses",
    ] {
        ensure!(
            config["Labels"][label].is_string(),
            "label {label}: {config}"
        );
    }
    // podman reports a docker-format image's HEALTHCHECK beside its config.
    let healthcheck = &inspect[0]["Healthcheck"];
    ensure!(
        healthcheck["Test"].to_string().contains("/healthz"),
        "no HEALTHCHECK on /healthz: {healthcheck}"
    );
    let (ok, out) = run_once(&[s("--entrypoint"), s("apono"), image.clone(), s("--version")])?;
    ensure!(
        ok && out.contains("apono "),
        "the apono CLI beside it: {out}"
    );

    let dir = tempfile::tempdir()?;
    let config_file = dir.path().join("connector.toml");
    std::fs::write(&config_file, "")?;
    let data = data_dir_for_image(dir.path(), "data")?;
    let port = free_port()?;
    // The image listens on 0.0.0.0 inside the container: plain HTTP there is an explicit choice.
    let insecure = s("--env=APONO_CONNECTOR_ALLOW_INSECURE_LISTEN=true");
    let container = Container::start(&[
        s("--read-only"),
        s("--tmpfs=/tmp"),
        insecure.clone(),
        format!("--publish=127.0.0.1:{port}:8080"),
        format!("--volume={}", mount(&data, "/var/lib/apono-connector", "")),
        format!(
            "--volume={}",
            mount(&config_file, "/etc/apono/connector.toml", ":ro")
        ),
        image.clone(),
    ])?;
    container.wait_http(
        &format!("http://127.0.0.1:{port}/healthz"),
        Duration::from_secs(30),
    )?;
    container.wait_http(
        &format!("http://127.0.0.1:{port}/readyz"),
        Duration::from_secs(30),
    )?;
    ensure!(container.healthcheck()?, "the image's HEALTHCHECK failed");
    // Its state is in the data directory (the root filesystem is read-only).
    ensure!(data.join("apono.sqlite3").is_file());
    drop(container);

    let base = |extra: &[String]| {
        let mut args = vec![
            s("--read-only"),
            s("--tmpfs=/tmp"),
            insecure.clone(),
            format!(
                "--volume={}",
                mount(&config_file, "/etc/apono/connector.toml", ":ro")
            ),
        ];
        args.extend_from_slice(extra);
        args.push(image.clone());
        args
    };
    // No volume: the image's data directory is on the read-only root.
    let (ok, out) = run_once(&base(&[]))?;
    ensure!(!ok, "started without a writable data directory: {out}");
    ensure!(
        out.contains(
            "the data directory /var/lib/apono-connector (connector.data_dir) is not writable"
        ),
        "{out}"
    );
    // A data directory that does not exist and cannot be made.
    let (ok, out) = run_once(&base(&[s("--env=APONO_CONNECTOR_DATA_DIR=/srv/apono")]))?;
    ensure!(!ok, "{out}");
    ensure!(
        out.contains(
            "the data directory /srv/apono (connector.data_dir) is missing and cannot be created"
        ),
        "{out}"
    );
    // A volume the image's user may not write (root's, mode 0755).
    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign)?;
    let (ok, out) = run_once(&base(&[format!(
        "--volume={}",
        mount(&foreign, "/var/lib/apono-connector", "")
    )]))?;
    ensure!(!ok, "{out}");
    ensure!(
        out.contains("is not writable by this process") && out.contains("Permission denied"),
        "{out}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_grants_and_revokes_on_the_test_sshd() -> Result<()> {
    let image = test_image()?;
    let server = SshServer::start()?;
    let dir = tempfile::tempdir()?;
    let data = data_dir_for_image(dir.path(), "data")?;
    let port = free_port()?;
    let config = format!(
        r#"
[connector]
id = "image"

[[users]]
email = "alice@example.com"
groups = ["developers"]

[[integrations]]
name = "servers"
type = "ssh"
connected_resource_types = ["ssh-server"]
secret_store = {}
config = {{ servers = [{}] }}

[[access_flows]]
name = "dev"
trigger = "automatic"
requestors = {{ groups = ["developers"] }}
targets = [{{ integration = "servers", resource_type = "ssh-server", permissions = ["Default"] }}]
grant_duration = "6s"
"#,
        ssh_secret_store(&server),
        ssh_server(&server, "web-1", "")
    );
    let config_file = dir.path().join("connector.toml");
    std::fs::write(&config_file, config)?;
    // The sshd listens on the host's loopback: the container shares the host's network.
    let args = |extra: &[&str]| {
        let mut args = vec![
            s("--read-only"),
            s("--tmpfs=/tmp"),
            s("--network=host"),
            format!("--env=APONO_CONNECTOR_LISTEN=127.0.0.1:{port}"),
            format!("--volume={}", mount(&data, "/var/lib/apono-connector", "")),
            format!(
                "--volume={}",
                mount(&config_file, "/etc/apono/connector.toml", ":ro")
            ),
            image.clone(),
        ];
        args.extend(extra.iter().map(|a| s(*a)));
        args
    };
    let (ok, out) = run_once(&args(&["tokens", "create", "--user", "alice@example.com"]))?;
    ensure!(ok, "tokens create in the image: {out}");
    let token = out
        .lines()
        .find(|l| l.starts_with("apono_"))
        .context("a token")?
        .to_owned();
    let container = Container::start(&args(&[]))?;
    let base = format!("http://127.0.0.1:{port}");
    container.wait_http(&format!("{base}/readyz"), Duration::from_secs(30))?;

    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let resources = call(
            &client,
            "GET",
            &format!("{base}/api/v1/resources"),
            &token,
            None,
        )
        .await?;
        if resources.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "no discovery: {}",
            container.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let request = call(&client, "POST", &format!("{base}/api/v1/access-requests"), &token, Some(&json!({
        "integration": "servers", "resource_type": "ssh-server", "resource_ids": ["web-1"], "permission": "Default"
    }))).await?;
    let id = request["id"].as_str().context("request id")?.to_owned();
    let session = loop {
        let r = call(
            &client,
            "GET",
            &format!("{base}/api/v1/access-requests/{id}"),
            &token,
            None,
        )
        .await?;
        match r["status"].as_str() {
            Some("Active") => break r["session_ids"][0].as_str().context("session")?.to_owned(),
            Some("Granting" | "Pending") if Instant::now() < deadline => {}
            other => bail!("request went {other:?}: {r}\n{}", container.logs()),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let details = call(
        &client,
        "GET",
        &format!("{base}/api/v1/access-sessions/{session}/access-details"),
        &token,
        None,
    )
    .await?;
    let key = details["credentials"]["private_key"]
        .as_str()
        .context("private key")?;
    let user = details["json"]["username"].as_str().context("username")?;
    let key_path = dir.path().join("id");
    std::fs::write(&key_path, key)?;
    std::fs::set_permissions(
        &key_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    ensure!(
        ssh_login(&server, &key_path, user)?,
        "granted key must log in"
    );

    // The grant expires after 6 s; the connector in the container revokes it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = call(
            &client,
            "GET",
            &format!("{base}/api/v1/access-requests/{id}"),
            &token,
            None,
        )
        .await?;
        if r["status"] == "Revoked" {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "not revoked: {r}\n{}",
            container.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(
        !ssh_login(&server, &key_path, user)?,
        "the key must no longer log in after the revoke"
    );
    Ok(())
}

/// One rendered manifest set: every document of `helm template`, by kind.
struct Rendered {
    docs: Vec<Value>,
}

impl Rendered {
    fn render(values_file: &str, extra: &[&str]) -> Result<Self> {
        let tools = DeployTools::get()?;
        let chart = repo_root().join("deploy/charts/apono-connector");
        let yaml = run(
            tools
                .helm()?
                .args(["template", "apono-connector"])
                .arg(&chart)
                .args(["--namespace", "apono"])
                .arg("--values")
                .arg(chart.join(values_file))
                .args(extra),
            "helm template",
        )?;
        let mut docs = Vec::new();
        for doc in serde_yaml_ng::Deserializer::from_str(&yaml) {
            let value: Value = serde::Deserialize::deserialize(doc)?;
            if !value.is_null() {
                docs.push(value);
            }
        }
        Ok(Self { docs })
    }

    fn one(&self, kind: &str) -> Result<&Value> {
        self.docs
            .iter()
            .find(|d| d["kind"] == kind)
            .with_context(|| format!("no {kind} rendered"))
    }
}

/// `podman run` arguments that give the image exactly what the chart's Deployment gives its
/// container: user, read-only root, capabilities, environment (a secretKeyRef from
/// `secrets`), every volume at its mount path (a ConfigMap's rendered data, a Secret from
/// `secrets`, a PVC or emptyDir as a directory the pod's user owns, a memory emptyDir as a
/// tmpfs), and the container's args.
fn podman_args_from_chart(
    rendered: &Rendered,
    image: &str,
    secrets: &BTreeMap<(String, String), String>,
    work: &Path,
) -> Result<(Vec<String>, Value)> {
    let deployment = rendered.one("Deployment")?;
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let mut args = Vec::new();
    let uid = pod["securityContext"]["runAsUser"]
        .as_u64()
        .context("runAsUser")?;
    let gid = pod["securityContext"]["runAsGroup"]
        .as_u64()
        .context("runAsGroup")?;
    args.push(format!("--user={uid}:{gid}"));
    let security = &container["securityContext"];
    ensure!(
        security["readOnlyRootFilesystem"] == true && security["allowPrivilegeEscalation"] == false
    );
    args.push(s("--read-only"));
    args.push(s("--security-opt=no-new-privileges"));
    for cap in security["capabilities"]["drop"]
        .as_array()
        .context("drop")?
    {
        args.push(format!("--cap-drop={}", cap.as_str().context("cap")?));
    }
    for env in container["env"].as_array().context("env")? {
        let name = env["name"].as_str().context("env name")?;
        let value = if let Some(value) = env["value"].as_str() {
            value.to_owned()
        } else {
            let reference = &env["valueFrom"]["secretKeyRef"];
            let key = (
                reference["name"]
                    .as_str()
                    .context("secret name")?
                    .to_owned(),
                reference["key"].as_str().context("secret key")?.to_owned(),
            );
            secrets
                .get(&key)
                .cloned()
                .with_context(|| format!("no test secret {key:?}"))?
        };
        args.push(format!("--env={name}={value}"));
    }
    let volumes: BTreeMap<&str, &Value> = pod["volumes"]
        .as_array()
        .context("volumes")?
        .iter()
        .filter_map(|v| Some((v["name"].as_str()?, v)))
        .collect();
    for (i, m) in container["volumeMounts"]
        .as_array()
        .context("mounts")?
        .iter()
        .enumerate()
    {
        let path = m["mountPath"].as_str().context("mountPath")?;
        let volume = volumes
            .get(m["name"].as_str().context("mount name")?)
            .context("a mount without its volume")?;
        let ro = if m["readOnly"] == true { ":ro" } else { "" };
        let host = work.join(format!("volume-{i}"));
        if let Some(name) = volume["configMap"]["name"].as_str() {
            let map = rendered
                .docs
                .iter()
                .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == name)
                .context("the ConfigMap")?;
            write_volume(&host, &map["data"], m["subPath"].as_str())?;
        } else if let Some(name) = volume["secret"]["secretName"].as_str() {
            let mut data = serde_json::Map::new();
            for ((secret, key), value) in secrets {
                if secret == name {
                    data.insert(key.clone(), Value::String(value.clone()));
                }
            }
            write_volume(&host, &Value::Object(data), m["subPath"].as_str())?;
        } else if volume["emptyDir"]["medium"] == "Memory" {
            args.push(format!("--tmpfs={path}"));
            continue;
        } else if volume.get("emptyDir").is_some() || volume.get("persistentVolumeClaim").is_some()
        {
            std::fs::create_dir_all(&host)?;
            std::os::unix::fs::chown(&host, Some(uid as u32), Some(gid as u32))?;
        } else {
            bail!("a volume the test does not know: {volume}");
        }
        args.push(format!("--volume={}", mount(&host, path, ro)));
    }
    args.push(image.to_owned());
    for arg in container["args"].as_array().context("args")? {
        args.push(arg.as_str().context("arg")?.to_owned());
    }
    Ok((args, container.clone()))
}

/// A volume's files: one file for a subPath mount, else a directory of files.
fn write_volume(host: &Path, data: &Value, sub_path: Option<&str>) -> Result<()> {
    let data = data.as_object().context("volume data")?;
    match sub_path {
        Some(key) => {
            let text = data[key].as_str().context("subPath key")?;
            std::fs::write(host, text)?;
        }
        None => {
            std::fs::create_dir_all(host)?;
            for (key, value) in data {
                std::fs::write(host.join(key), value.as_str().context("text")?)?;
            }
        }
    }
    Ok(())
}

#[test]
fn the_image_starts_with_exactly_what_the_chart_mounts() -> Result<()> {
    let image = test_image()?;
    let rendered = Rendered::render("ci/sqlite-values.yaml", &[])?;
    let work = tempfile::tempdir()?;
    let (mut args, container) =
        podman_args_from_chart(&rendered, &image, &BTreeMap::new(), work.path())?;
    let port = free_port()?;
    let container_port = container["ports"][0]["containerPort"]
        .as_u64()
        .context("port")?;
    args.insert(0, format!("--publish=127.0.0.1:{port}:{container_port}"));
    let running = Container::start(&args)?;
    for probe in ["livenessProbe", "readinessProbe"] {
        let path = container[probe]["httpGet"]["path"]
            .as_str()
            .context("probe path")?;
        running.wait_http(
            &format!("http://127.0.0.1:{port}{path}"),
            Duration::from_secs(30),
        )?;
    }
    // The chart's values reached the connector: its id, and the allow-list (qualified with
    // the release's namespace) that the configuration check accepted.
    let env: Vec<String> = args
        .iter()
        .filter(|a| a.starts_with("--env="))
        .cloned()
        .collect();
    ensure!(
        env.contains(&s("--env=APONO_CONNECTOR_ID=prod-eu-1")),
        "{env:?}"
    );
    ensure!(
        env.contains(&s("--env=APONO_CONNECTOR_ALLOWED_SECRETS_TO_READ=apono/ssh-admin,apono-vault/apono-vault-role")),
        "{env:?}"
    );
    ensure!(
        running.logs().contains("apono-connector listening"),
        "{}",
        running.logs()
    );
    Ok(())
}

/// Three replicas on PostgreSQL with TLS and a master key: the chart's Secrets become files
/// and environment as Kubernetes would mount them, PostgreSQL is the testkit's (reached from
/// the container through slirp4netns' host loopback, as a cluster reaches its database).
/// It must start and answer its probes over TLS.
#[test]
fn the_image_runs_the_postgres_tls_values_as_the_chart_mounts_them() -> Result<()> {
    let image = test_image()?;
    let postgres = apono_testkit::Postgres::start()?;
    let work = tempfile::tempdir()?;
    let tls = work.path().join("tls");
    std::fs::create_dir(&tls)?;
    run(
        std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args([
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=apono-connector.apono.svc",
            ])
            .args([
                "-addext",
                "subjectAltName=DNS:apono-connector.apono.svc,IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(tls.join("tls.key"))
            .arg("-out")
            .arg(tls.join("tls.crt")),
        "openssl req",
    )?;
    let read = |name: &str| std::fs::read_to_string(tls.join(name));
    let url = format!(
        "postgres://{}:{}@10.0.2.2:{}/{}",
        postgres.superuser(),
        postgres.password(),
        postgres.port(),
        postgres.database()
    );
    let config = "[[users]]\nemail = \"alice@example.com\"\nadmin = true\n";
    let mut secrets = BTreeMap::new();
    for (secret, key, value) in [
        ("apono-connector-db", "database_url", url),
        (
            "apono-connector-master-key",
            "master_key",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".to_owned(),
        ),
        ("apono-connector-tls", "tls.crt", read("tls.crt")?),
        ("apono-connector-tls", "tls.key", read("tls.key")?),
        (
            "apono-connector-config",
            "connector.toml",
            config.to_owned(),
        ),
    ] {
        secrets.insert((s(secret), s(key)), value);
    }
    let rendered = Rendered::render("ci/postgres-ha-tls-values.yaml", &[])?;
    let deployment = rendered.one("Deployment")?;
    ensure!(deployment["spec"]["replicas"] == 3);
    let (mut args, container) = podman_args_from_chart(&rendered, &image, &secrets, work.path())?;
    let port = free_port()?;
    args.insert(0, s("--network=slirp4netns:allow_host_loopback=true"));
    args.insert(0, format!("--publish=127.0.0.1:{port}:8080"));

    let running = Container::start(&args)?;
    for probe in ["livenessProbe", "readinessProbe"] {
        ensure!(container[probe]["httpGet"]["scheme"] == "HTTPS");
        let path = container[probe]["httpGet"]["path"]
            .as_str()
            .context("path")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = std::process::Command::new("curl")
                .args(["-fsS", "-o", "/dev/null", "--max-time", "2", "--cacert"])
                .arg(tls.join("tls.crt"))
                .arg(format!("https://127.0.0.1:{port}{path}"))
                .status()?
                .success();
            if ok {
                break;
            }
            ensure!(Instant::now() < deadline, "{path}: {}", running.logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    drop(running);

    // The same values without TLS (plain HTTP allowed explicitly): three replicas, as the Deployment runs
    // them, share the PostgreSQL store and each answers its probes.
    let plain = Rendered::render(
        "ci/postgres-ha-tls-values.yaml",
        &[
            "--set",
            "tls.existingSecret=",
            "--set",
            "allowInsecureListen=true",
        ],
    )?;
    let mut replicas = Vec::new();
    for i in 0..3 {
        let dir = work.path().join(format!("replica-{i}"));
        std::fs::create_dir(&dir)?;
        let (mut args, _) = podman_args_from_chart(&plain, &image, &secrets, &dir)?;
        let port = free_port()?;
        args.insert(0, s("--network=slirp4netns:allow_host_loopback=true"));
        args.insert(0, format!("--publish=127.0.0.1:{port}:8080"));
        replicas.push((Container::start(&args)?, port));
    }
    for (replica, port) in &replicas {
        for path in ["/healthz", "/readyz"] {
            replica.wait_http(
                &format!("http://127.0.0.1:{port}{path}"),
                Duration::from_secs(60),
            )?;
        }
    }
    // Their store is PostgreSQL: the schema is there, and no SQLite file was made.
    let tables = run(
        postgres.psql().args([
            "-tA",
            "-c",
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
        ]),
        "psql",
    )?;
    ensure!(tables.trim().parse::<u32>()? > 0, "no tables in PostgreSQL");
    ensure!(
        !work
            .path()
            .join("replica-0")
            .read_dir()?
            .flatten()
            .any(|e| { walk_has(&e.path(), "apono.sqlite3") })
    );
    Ok(())
}

fn walk_has(path: &Path, name: &str) -> bool {
    if path.file_name().is_some_and(|n| n == name) {
        return true;
    }
    path.read_dir()
        .map(|entries| entries.flatten().any(|e| walk_has(&e.path(), name)))
        .unwrap_or(false)
}
