// A real OpenID provider (the certified `oidc-provider`) on loopback for tests/sso.rs.
//
//   node provider.mjs <port> <client_id> <client_secret> [<tokens file>]
//
// Every token the token endpoint issues is appended to <tokens file> (one a line), so that
// the test can look for each of them in the connector's log.
// Prints one JSON line {"issuer": …} once it listens. Accounts are made on first login (any
// password, the dev interactions' pages) with the groups set through the admin endpoints:
//
//   POST /admin/users/<login>   {"groups": [...], "email": "...", "disabled": false}
//   POST /admin/mutate          {"mutation": "wrong-audience" | "wrong-issuer" | "expired" |
//                                "alg-none" | "hs256-public-key" | "wrong-nonce" | "unknown-key"}
//
// A mutation applies to the next ID token the token endpoint answers (once): it is re-signed
// with the provider's own key (or, for the attacks, as the attack does), so the connector
// receives it through the real code exchange.
import { appendFileSync } from 'node:fs';
import { createPublicKey } from 'node:crypto';
import Provider from 'oidc-provider';
import * as jose from 'jose';

const [port, clientId, clientSecret, tokensFile] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;

// A new key (and key id) at every start: a restart is a key rotation.
const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
const kid = `k-${Date.now().toString(36)}`;
const jwk = { ...(await jose.exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
const publicPem = createPublicKey(await jose.exportPKCS8(privateKey)).export({ type: 'spki', format: 'pem' });

const users = new Map(); // login -> { email, groups, disabled }
let mutation = null;

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    application_type: 'native',
    redirect_uris: ['http://127.0.0.1/callback', 'http://127.0.0.1/ui/sso/callback'],
    grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [jwk] },
  claims: { openid: ['sub', 'groups'], email: ['email', 'email_verified'] },
  conformIdTokenClaims: false,
  features: { deviceFlow: { enabled: true }, revocation: { enabled: true } },
  ttl: { IdToken: 3600, AccessToken: 3600, RefreshToken: 86400, DeviceCode: 600, Interaction: 600, Session: 3600, Grant: 86400 },
  cookies: { keys: ['apono-sso-test-cookie-key'] },
  async findAccount(_ctx, id) {
    const user = users.get(id) ?? { email: `${id}@example.com`, groups: [], disabled: false };
    if (!users.has(id)) users.set(id, user);
    if (user.disabled) return undefined;
    return {
      accountId: id,
      async claims() {
        const u = users.get(id);
        return { sub: id, email: u.email, email_verified: true, groups: u.groups };
      },
    };
  },
});
provider.proxy = false;

const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');

async function mutate(idToken, how) {
  const [, payloadPart] = idToken.split('.');
  const claims = JSON.parse(Buffer.from(payloadPart, 'base64url').toString());
  const sign = (c, key = privateKey, keyId = kid) =>
    new jose.SignJWT(c).setProtectedHeader({ alg: 'RS256', kid: keyId, typ: 'JWT' }).sign(key);
  switch (how) {
    case 'wrong-audience': return sign({ ...claims, aud: 'someone-else' });
    case 'wrong-issuer': return sign({ ...claims, iss: 'http://127.0.0.1:1/evil' });
    case 'expired': return sign({ ...claims, iat: claims.iat - 7200, exp: claims.iat - 3600 });
    case 'wrong-nonce': return sign({ ...claims, nonce: 'a-nonce-from-another-sign-in' });
    case 'alg-none': return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`;
    case 'hs256-public-key':
      return new jose.SignJWT(claims).setProtectedHeader({ alg: 'HS256', kid, typ: 'JWT' })
        .sign(new TextEncoder().encode(publicPem));
    case 'unknown-key': {
      const other = await jose.generateKeyPair('RS256');
      return sign(claims, other.privateKey, 'k-unpublished');
    }
    default: throw new Error(`unknown mutation ${how}`);
  }
}

async function readJson(req) {
  let text = '';
  for await (const chunk of req) text += chunk;
  return text ? JSON.parse(text) : {};
}

provider.use(async (ctx, next) => {
  if (ctx.path.startsWith('/admin/') && ctx.method === 'POST') {
    const body = await readJson(ctx.req);
    if (ctx.path === '/admin/mutate') {
      mutation = body.mutation ?? null;
    } else {
      const login = decodeURIComponent(ctx.path.slice('/admin/users/'.length));
      const before = users.get(login) ?? { email: `${login}@example.com`, groups: [], disabled: false };
      users.set(login, { ...before, ...body });
    }
    ctx.body = { ok: true };
    return;
  }
  await next();
  if (ctx.path === '/token' && mutation && ctx.body && ctx.body.id_token) {
    const how = mutation;
    mutation = null;
    ctx.body = { ...ctx.body, id_token: await mutate(ctx.body.id_token, how) };
  }
  if (ctx.path === '/token' && tokensFile && ctx.body && typeof ctx.body === 'object') {
    for (const key of ['id_token', 'access_token', 'refresh_token']) {
      if (ctx.body[key]) appendFileSync(tokensFile, `${ctx.body[key]}\n`);
    }
  }
});

const server = provider.listen(Number(port), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ issuer, kid })}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
