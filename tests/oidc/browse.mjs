// What a person does in the browser at the test provider, done over HTTP for tests/sso.rs:
//
//   node browse.mjs <url> <login> [stop]
//
// Follows redirects (keeping the provider's cookies), fills the provider's forms (the login
// form with <login> and any password, the consent and device-confirmation forms as they are)
// and stops at the first redirect that leaves the provider: it GETs that URL (the CLI's
// loopback listener, or the connector's callback) and prints {"url", "status", "body"} as
// one JSON line (with `stop`, it only prints the URL, as {"url"}). A page without a form ends the walk (the device flow's success page).
const [start, login, stop] = process.argv.slice(2);
const jar = new Map();
let url = new URL(start);
const origin = url.origin;
let method = 'GET';
let body;

function keepCookies(res) {
  for (const c of res.headers.getSetCookie()) {
    const [pair] = c.split(';');
    const i = pair.indexOf('=');
    jar.set(pair.slice(0, i), pair.slice(i + 1));
  }
}

const cookieHeader = () => [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
const decode = (s) => s.replace(/&amp;/g, '&').replace(/&#x2F;/g, '/').replace(/&quot;/g, '"');

for (let step = 0; step < 30; step += 1) {
  const headers = { cookie: cookieHeader() };
  if (body) headers['content-type'] = 'application/x-www-form-urlencoded';
  const res = await fetch(url, { method, headers, body, redirect: 'manual' });
  keepCookies(res);
  method = 'GET';
  body = undefined;
  const location = res.headers.get('location');
  if (res.status >= 300 && res.status < 400 && location) {
    const next = new URL(location, url);
    if (next.origin !== origin && stop === 'stop') {
      process.stdout.write(`${JSON.stringify({ url: next.href })}\n`);
      process.exit(0);
    }
    if (next.origin !== origin) {
      const final = await fetch(next, { redirect: 'manual' });
      process.stdout.write(`${JSON.stringify({ url: next.href, status: final.status, body: await final.text() })}\n`);
      process.exit(0);
    }
    url = next;
    continue;
  }
  const html = await res.text();
  const form = html.match(/<form[^>]*action="([^"]*)"[^>]*>([\s\S]*?)<\/form>/);
  if (!form) {
    process.stdout.write(`${JSON.stringify({ url: url.href, status: res.status, body: html.slice(0, 2000) })}\n`);
    process.exit(0);
  }
  const fields = new URLSearchParams();
  for (const input of form[2].matchAll(/<input[^>]*>/g)) {
    const name = input[0].match(/name="([^"]*)"/)?.[1];
    if (!name) continue;
    const value = input[0].match(/value="([^"]*)"/)?.[1] ?? '';
    if (name === 'login') fields.set(name, login);
    else if (name === 'password') fields.set(name, 'any-password');
    else fields.set(name, decode(value));
  }
  url = new URL(decode(form[1]), url);
  method = 'POST';
  body = fields.toString();
}
process.stderr.write('too many steps\n');
process.exit(1);
