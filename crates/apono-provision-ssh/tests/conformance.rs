//! `apono_core::conformance::check_provisioner` against a real OpenSSH server. Observations
//! come from the server: logins with the system `ssh` client and files read inside its
//! namespace.

mod common;

use apono_core::conformance::{ProvisionerHarness, check_provisioner};
use apono_core::{
    ActionContext, BoxError, GrantSpec, GrantState, Granted, Provisioner, async_trait,
};
use apono_provision_ssh::SshProvisioner;
use apono_testkit::SshServer;
use common::*;

struct Harness {
    server: SshServer,
    provisioner: SshProvisioner,
}

#[async_trait]
impl ProvisionerHarness for Harness {
    fn provisioner(&self) -> &dyn Provisioner {
        &self.provisioner
    }

    fn context(&self) -> ActionContext {
        ctx(&self.server)
    }

    fn grant(&self, grantee: usize, grant_id: &str) -> GrantSpec {
        grant(&format!("person{grantee}"), grant_id, "devs", in_an_hour())
    }

    async fn snapshot(&self) -> Result<Vec<String>, BoxError> {
        let out = self.server.exec(&[
            "sh",
            "-c",
            "cat /etc/passwd /etc/group /etc/shadow; ls -A /home; \
             ps -eo user:32= | sort -u | grep -vx -e root -e apono -e sshd; true",
        ])?;
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        Ok(lines)
    }

    async fn has_access(&self, _grant: &GrantSpec, granted: &Granted) -> Result<bool, BoxError> {
        Ok(login(&self.server, granted, &["true"]).is_some())
    }

    async fn remove_out_of_band(
        &self,
        _grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<(), BoxError> {
        let user = state.as_json()["username"]
            .as_str()
            .ok_or("state without username")?
            .to_owned();
        self.server.exec(&["pkill", "-KILL", "-u", &user])?;
        let out = self.server.exec(&["userdel", "-r", &user])?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provisioner_conforms_on_a_real_server() {
    let server = start_server();
    let provisioner = provisioner(&server);
    let harness = Harness {
        server,
        provisioner,
    };
    let report = check_provisioner(&harness)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.not_applicable.is_empty(), "{report:?}");
}
