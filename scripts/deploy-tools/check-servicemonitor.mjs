// Checks every ServiceMonitor in the given multi-document YAML files against the
// prometheus-operator CRD's schema (types and required fields; the CRD allows unknown fields).
// Run from the directory holding node_modules (scripts/deploy-check.sh copies it there).
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import yaml from "js-yaml";
import fs from "fs";

let n = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of yaml.loadAll(fs.readFileSync(file, "utf8"))) {
    if (doc && doc.kind === "ServiceMonitor") {
      new ServiceMonitor(doc).validate();
      n++;
    }
  }
}
if (n === 0) {
  console.error("no ServiceMonitor rendered");
  process.exit(1);
}
console.error(`deploy-check: ${n} ServiceMonitor valid`);
