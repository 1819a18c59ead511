// An OpenID provider for the console's sign-in tests: the certified
// `oidc-provider` on loopback, one confidential client (the console under
// test), three users with groups, its own login page (typed into by the
// browser), consent given on sign-in so the flow goes straight back.
//
// Environment: HOST (loopback, 127.0.0.1 by default), PORT, REDIRECT_URI, CLIENT_SECRET; PUBLISH_OTHER_KEY=1 makes
// it sign ID tokens with a key it does not publish (as a token from someone
// holding another key would be).
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const host = process.env.HOST || '127.0.0.1';
const issuer = `http://${host}:${port}`;

const accounts = {
  lan: { name: 'Trần Thị Lan', email: 'lan@city.example', groups: ['soc-analysts', 'staff'] },
  minh: { name: 'Lê Văn Minh', email: 'minh@city.example', groups: ['/soc-admins'] },
  hoa: { name: 'Phạm Thu Hoa', email: 'hoa@city.example', groups: ['parks'] },
};

function signingKey(kid) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' };
}

const key = signingKey('test-1');

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'citysoc',
    client_secret: process.env.CLIENT_SECRET,
    redirect_uris: [process.env.REDIRECT_URI],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [key] },
  cookies: { keys: ['a test provider cookie key'] },
  pkce: { required: () => true },
  scopes: ['openid', 'profile', 'email'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username', 'groups'],
    email: ['email', 'email_verified'],
  },
  // The groups travel in the ID token, as Keycloak's group mapper and
  // Entra ID's groups claim put them.
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const a = accounts[id];
    if (!a) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, name: a.name, email: a.email, email_verified: true, groups: a.groups };
      },
    };
  },
  // Consent is taken as given, as an administrator's client is in Keycloak.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid profile email');
    await grant.save();
    return grant;
  },
});

if (process.env.PUBLISH_OTHER_KEY === '1') {
  const { d, p, q, dp, dq, qi, ...pub } = signingKey('test-1');
  provider.use(async (ctx, next) => {
    if (ctx.path === '/jwks') {
      ctx.body = { keys: [pub] };
      return;
    }
    await next();
  });
}

provider.listen(port, host, () => {
  console.log(`listening ${issuer}`);
});
