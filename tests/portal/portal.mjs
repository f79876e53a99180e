// The portal in a real headless Chromium (Debian's, driven by playwright-core), run by
// tests/portal.rs against a running apono-connector and the test kit's sshd:
// alice requests, bob approves from his inbox, alice's page turns Active by itself (live
// status), alice reveals the key once (coming back shows it masked) and the Rust side logs in
// to sshd with it, alice resets the credentials and reveals the new key, alice revokes early; a missing, wrong or cross-site form token is refused,
// a wrong token is refused at sign-in, alice cannot open bob's pages, carol (admin) sees every
// request, the revoke failures and the audit log with its JSON-lines export. Screenshots of
// every page go to $OUT/screenshots.
//
// Environment: PORTAL_URL, ALICE_TOKEN, BOB_TOKEN, CAROL_TOKEN, BOB_REQUEST, BOB_SESSION, OUT.
import { chromium } from "playwright-core";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const BASE = env("PORTAL_URL");
const OUT = env("OUT");
const SHOTS = join(OUT, "screenshots");
mkdirSync(SHOTS, { recursive: true });

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

const step = (text) => console.log(`-- ${text}`);

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `portal-${name}.png`), fullPage: true });
}

// Every answer of the portal carries the strict policy; no page may break it.
function watchPage(page, who) {
  page.on("console", (m) => {
    if (m.type() === "error" && /Content Security Policy|Refused to/.test(m.text())) {
      throw new Error(`${who}: the page broke its CSP: ${m.text()}`);
    }
  });
  page.on("pageerror", (e) => { throw new Error(`${who}: script error: ${e.message}`); });
}

async function signIn(browser, token, who, viewport = { width: 1200, height: 900 }) {
  const context = await browser.newContext({ viewport, baseURL: BASE });
  const page = await context.newPage();
  watchPage(page, who);
  await page.goto("/ui/");
  check(page.url().endsWith("/ui/sign-in"), `${who}: /ui/ without a session goes to sign-in (${page.url()})`);
  await page.getByLabel("Personal API token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(`${BASE}/ui/`);
  await page.getByRole("heading", { name: "My access" }).waitFor();
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "apono_portal");
  check(session && session.httpOnly && session.sameSite === "Strict", `${who}: the session cookie is HttpOnly and SameSite=Strict`);
  check(!session.value.includes(token), `${who}: the cookie holds a session token, not the personal token`);
  return { context, page };
}

// Every visible form control has a label (screen readers name them).
async function labelled(page, what) {
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll("input:not([type=hidden]), select, textarea")]
      .filter((el) => !el.closest("[hidden]") && el.labels.length === 0)
      .map((el) => el.id || el.name));
  check(unlabelled.length === 0, `${what}: controls without a label: ${unlabelled}`);
}

// Hands a key to tests/portal.rs (OUT/NAME, then OUT/NAME.ready) and waits for its verdict
// on an SSH login with it (OUT/NAME.result).
async function sshLogin(name, key) {
  if (key !== undefined) writeFileSync(join(OUT, name), key.endsWith("\n") ? key : key + "\n", { mode: 0o600 });
  writeFileSync(join(OUT, `${name}.ready`), "");
  const result = join(OUT, `${name}.result`);
  for (let i = 0; !existsSync(result); i++) {
    check(i < 600, `no ssh result for ${name} from the test within 60 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
  check(readFileSync(result, "utf8").trim() === "ok", `ssh login with ${name} succeeded`);
}

async function formToken(page) {
  return page.locator("input[name=csrf]").first().inputValue();
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  // playwright-core starts every launch with a fresh, temporary --user-data-dir of its own.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run"],
});

try {
  // ---------------------------------------------------------------- a wrong token
  step("a wrong token is refused at sign-in");
  {
    const context = await browser.newContext({ baseURL: BASE });
    const page = await context.newPage();
    watchPage(page, "anonymous");
    const first = await page.goto("/ui/sign-in");
    const csp = first.headers()["content-security-policy"] || "";
    check(csp.includes("script-src 'self'") && csp.includes("frame-ancestors 'none'") && !csp.includes("unsafe-inline"),
      `strict CSP: ${csp}`);
    await labelled(page, "sign-in");
    await shot(page, "sign-in");
    await page.getByLabel("Personal API token").fill("apono_" + "x".repeat(52));
    const [answer] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith("/ui/sign-in") && r.request().method() === "POST"),
      page.getByRole("button", { name: "Sign in" }).click(),
    ]);
    check(answer.status() === 401, `a wrong token answers 401, not ${answer.status()}`);
    await page.getByText("That token is not valid").waitFor();
    check((await context.cookies()).every((c) => c.name !== "apono_portal"), "no session after a wrong token");
    await context.close();
  }

  const alice = await signIn(browser, env("ALICE_TOKEN"), "alice");
  const bob = await signIn(browser, env("BOB_TOKEN"), "bob");
  await shot(alice.page, "home-empty");

  // ---------------------------------------------------------------- alice requests
  step("alice fills the request form; the dry run's problems appear next to the fields");
  const a = alice.page;
  await a.goto("/ui/requests/new");
  await labelled(a, "request form");
  await a.getByLabel("Integration").selectOption("servers");
  await a.getByLabel("Resource type").selectOption("ssh-server");
  await a.getByLabel(/web-1/).check();
  await a.getByLabel("Permission").selectOption("Default");
  await a.getByLabel(/^Duration/).fill("2h");
  await a.locator("#duration-problems li").first().waitFor();
  check(/10m/.test(await a.locator("#duration-problems").innerText()), "the duration problem names the flow's maximum");
  await a.locator("#justification-problems li").first().waitFor();
  await shot(a, "request-form-problems");
  await a.getByLabel(/^Duration/).fill("5m");
  await a.getByLabel("Justification").fill("deploy the hotfix");
  await a.locator("#duration-problems li").waitFor({ state: "detached" });
  await a.locator("#justification-problems li").waitFor({ state: "detached" });
  await a.getByText("needs approval").waitFor();
  // The keyboard walks the form in reading order.
  await a.locator("#integration").focus();
  const order = [];
  for (let i = 0; i < 6; i++) {
    await a.keyboard.press("Tab");
    order.push(await a.evaluate(() => document.activeElement.id || document.activeElement.textContent.trim()));
  }
  check(order.join(",") === "resource_type,resource-1,permission,duration,justification,Request access",
    `focus order of the request form: ${order}`);
  await a.getByRole("button", { name: "Request access" }).click();
  await a.waitForURL(/\/ui\/requests\/req_/);
  const requestUrl = a.url();
  const requestId = requestUrl.split("/").pop();
  check((await a.locator("#request-status").innerText()) === "Pending", "the new request is Pending");
  await a.locator(".live", { hasText: "(live)" }).waitFor();
  await shot(a, "request-pending");

  // ---------------------------------------------------------------- bob's inbox
  step("bob sees it in his inbox; form posts without the right token are refused");
  const b = bob.page;
  await b.goto("/ui/inbox");
  await b.getByRole("heading", { name: /alice@example.com/ }).waitFor();
  await labelled(b, "inbox");
  await shot(b, "inbox");
  const approveUrl = `/ui/requests/${requestId}/approve`;
  const bobToken = await formToken(b);
  const none = await b.request.post(approveUrl, { form: { reason: "no token" }, maxRedirects: 0 });
  check(none.status() === 403, `approve without a form token: 403, not ${none.status()}`);
  const wrong = await b.request.post(approveUrl, { form: { reason: "wrong", csrf: "0".repeat(64) }, maxRedirects: 0 });
  check(wrong.status() === 403, `approve with a wrong form token: 403, not ${wrong.status()}`);
  const foreign = await b.request.post(approveUrl, {
    form: { reason: "cross-site", csrf: bobToken },
    headers: { origin: "https://evil.example" }, maxRedirects: 0,
  });
  check(foreign.status() === 403, `approve posted from another site: 403, not ${foreign.status()}`);
  const aliceSelf = await alice.page.request.post(approveUrl, { form: { csrf: await formToken(a) }, maxRedirects: 0 });
  check(aliceSelf.status() === 403, `alice approving her own request: 403, not ${aliceSelf.status()}`);
  check((await a.locator("#request-status").innerText()) === "Pending", "still Pending after the refused posts");

  step("bob approves; alice's open page turns Active by itself");
  const card = b.locator("article", { has: b.locator(`a[href="/ui/requests/${requestId}"]`) });
  await card.getByLabel("Reason (optional)").fill("ok for the hotfix");
  await card.getByRole("button", { name: "Approve" }).click();
  await b.waitForURL(`${BASE}/ui/requests/${requestId}`);
  await a.locator("#request-status", { hasText: "Active" }).waitFor({ timeout: 60000 });
  check(a.url() === requestUrl, "alice's page was updated in place");
  check((await a.locator("#approval-progress").innerText()).includes("bob@example.com"), "the approver is shown");
  await shot(a, "request-active");

  // ---------------------------------------------------------------- reveal once
  step("alice reveals the key once; coming back shows it masked");
  await alice.context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: BASE });
  await a.locator("a[href^='/ui/sessions/']").first().click();
  await a.waitForURL(/\/ui\/sessions\//);
  const sessionUrl = a.url();
  const account = (await a.locator("#account").innerText()).trim();
  await shot(a, "session");
  await a.getByRole("button", { name: "Reveal credentials" }).click();
  const secret = a.locator("textarea[data-credential=private_key]");
  await secret.waitFor();
  const key = await secret.inputValue();
  check(key.includes("PRIVATE KEY"), "the revealed credential is a private key");
  check(!a.url().includes("PRIVATE") && !a.url().includes("apono_"), "nothing secret in the URL");
  await a.getByRole("button", { name: "Copy private_key" }).click();
  check((await a.evaluate(() => navigator.clipboard.readText())) === key, "the copy button copies the key");
  await labelled(a, "session");
  writeFileSync(join(OUT, "key"), key.endsWith("\n") ? key : key + "\n", { mode: 0o600 });
  writeFileSync(join(OUT, "account"), account);

  await a.goto(sessionUrl);
  await a.locator("#credentials-note").waitFor();
  check(await a.locator("textarea.secret").count() === 0, "no credential on the session page after the reveal");
  check(await a.getByRole("button", { name: "Reveal credentials" }).count() === 0, "no second reveal");
  const again = await a.request.post(`${new URL(sessionUrl).pathname}/reveal`, { form: { csrf: await formToken(a) } });
  const againText = await again.text();
  check(again.status() === 200 && !againText.includes("PRIVATE KEY") && againText.includes("shown once"),
    "a second reveal shows them masked");
  await shot(a, "session-masked");

  step("the test logs in to sshd with the revealed key");
  await sshLogin("key");

  step("alice resets the credentials; the session page offers a new reveal by itself");
  await a.goto(sessionUrl);
  await a.getByRole("button", { name: "Reset credentials" }).click();
  await a.waitForURL(sessionUrl);
  await a.getByRole("button", { name: "Reveal credentials" }).waitFor({ timeout: 60000 });
  await a.getByRole("button", { name: "Reveal credentials" }).click();
  const fresh = await a.locator("textarea[data-credential=private_key]").inputValue();
  check(fresh.includes("PRIVATE KEY") && fresh !== key, "the reset issued a different key");
  step("the test logs in to sshd with the new key");
  await sshLogin("key2", fresh);

  // ---------------------------------------------------------------- bob's pages
  step("alice cannot open bob's pages");
  for (const path of [`/ui/requests/${env("BOB_REQUEST")}`, `/ui/sessions/${env("BOB_SESSION")}`]) {
    const r = await a.goto(path);
    check(r.status() === 404, `alice opening ${path}: 404, not ${r.status()}`);
  }
  const revokeBob = await a.request.post(`/ui/requests/${env("BOB_REQUEST")}/revoke`, { form: { csrf: await formToken(a) }, maxRedirects: 0 });
  check(revokeBob.status() === 404, `alice revoking bob's request: 404, not ${revokeBob.status()}`);
  const audit = await a.goto("/ui/admin/audit");
  check(audit.status() === 403, `alice opening the audit log: 403, not ${audit.status()}`);

  // ---------------------------------------------------------------- revoke early
  step("alice revokes early");
  await a.goto(requestUrl);
  await a.getByRole("button", { name: "Revoke access now" }).click();
  await a.locator("#request-status", { hasText: "Revoked" }).waitFor({ timeout: 60000 });
  await shot(a, "request-revoked");

  // ---------------------------------------------------------------- a rejection
  step("bob rejects a second request; a rejection needs a reason");
  await a.goto("/ui/requests/new");
  await a.getByLabel("Integration").selectOption("servers");
  await a.getByLabel("Resource type").selectOption("ssh-server");
  await a.getByLabel(/web-1/).check();
  await a.getByLabel("Permission").selectOption("Default");
  await a.getByLabel("Justification").fill("one more look");
  await a.getByRole("button", { name: "Request access" }).click();
  await a.waitForURL(/\/ui\/requests\/req_/);
  const secondId = a.url().split("/").pop();
  await b.goto("/ui/inbox");
  const second = b.locator("article", { has: b.locator(`a[href="/ui/requests/${secondId}"]`) });
  await second.waitFor();
  const noReason = await b.request.post(`/ui/requests/${secondId}/reject`, { form: { csrf: await formToken(b), reason: " " }, maxRedirects: 0 });
  check(noReason.status() === 400, `a rejection without a reason: 400, not ${noReason.status()}`);
  await second.getByLabel("Reason (required)").fill("not during the freeze");
  await second.getByRole("button", { name: "Reject" }).click();
  await b.waitForURL(`${BASE}/ui/requests/${secondId}`);
  await a.locator("#request-status", { hasText: "Rejected" }).waitFor({ timeout: 60000 });
  await a.getByText("not during the freeze").waitFor();
  check((await a.locator("#approval-progress").innerText()).includes("rejected by bob@example.com"), "the rejecter is shown");

  // ---------------------------------------------------------------- a phone
  step("a phone-sized screen");
  {
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, baseURL: BASE, storageState: await alice.context.storageState() });
    const p = await phone.newPage();
    watchPage(p, "alice on a phone");
    for (const path of ["/ui/", requestUrl, "/ui/requests/new"]) {
      await p.goto(path);
      const width = await p.evaluate(() => document.documentElement.scrollWidth);
      check(width <= 390, `${path} fits a 390 px screen (${width} px wide)`);
    }
    await p.goto("/ui/");
    await shot(p, "phone-home");
    await phone.close();
  }

  // ---------------------------------------------------------------- carol, admin
  step("carol (admin): every request, revoke failures, the audit log and its export");
  const carol = await signIn(browser, env("CAROL_TOKEN"), "carol");
  const c = carol.page;
  await c.goto("/ui/admin/requests");
  await c.locator(`a[href="/ui/requests/${requestId}"]`).waitFor();
  await c.locator(`a[href="/ui/requests/${env("BOB_REQUEST")}"]`).waitFor();
  await shot(c, "admin-requests");
  await c.goto("/ui/admin/revoke-failed");
  await c.getByText("every revoke succeeded").waitFor();
  await c.goto("/ui/admin/audit");
  await c.getByLabel("Subject").fill(requestId);
  await c.getByRole("button", { name: "Filter" }).click();
  await c.locator("td", { hasText: "request.approve" }).first().waitFor();
  await labelled(c, "audit");
  await shot(c, "admin-audit");
  const href = await c.getByRole("link", { name: /Export/ }).getAttribute("href");
  const exported = await c.request.get(href);
  check(exported.headers()["content-type"].startsWith("application/x-ndjson"), "the export is JSON lines");
  const lines = (await exported.text()).trim().split("\n").map((l) => JSON.parse(l));
  check(lines.length > 0 && lines.every((r) => r.subject === requestId && Number.isInteger(r.seq)), "every exported record is about the request");

  // ---------------------------------------------------------------- sign out
  step("sign-out ends the session");
  const before = await alice.context.cookies();
  await a.goto("/ui/");
  await a.getByRole("button", { name: "Sign out" }).click();
  await a.waitForURL(`${BASE}/ui/sign-in`);
  const stale = await browser.newContext({ baseURL: BASE });
  await stale.addCookies(before.filter((k) => k.name === "apono_portal"));
  const afterPage = await stale.newPage();
  await afterPage.goto("/ui/");
  check(afterPage.url().endsWith("/ui/sign-in"), "the signed-out session's cookie no longer works");
  await stale.close();
  console.log("portal walk passed");
} finally {
  await browser.close();
}
