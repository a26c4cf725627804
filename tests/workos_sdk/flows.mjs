// Every Vault call of the official WorkOS Node SDK, as its documentation writes them, against
// vaultd's HTTP listener. Only the client's host changes (apiHostname, port, https: false).
// Run by test_node_sdk.py, which reads the JSON line printed at the end and checks, over gRPC,
// what the SDK wrote. Any failed assertion exits non-zero with the reason on stderr.
import assert from 'node:assert/strict';
import {
  NotFoundException,
  UnauthorizedException,
  UnprocessableEntityException,
  WorkOS,
} from '@workos-inc/node';

const env = process.env;
const workos = new WorkOS(env.WORKOS_API_KEY, {
  apiHostname: '127.0.0.1',
  port: Number(env.VAULTD_HTTP_PORT),
  https: false,
});
const run = env.RUN_ID;
const context = { organization_id: `org_${run}` };

// `cls` is an exported exception class, or the name of one the package does not export
// (ConflictException).
async function rejects(promise, cls) {
  const expected = typeof cls === 'string' ? cls : cls.name;
  try {
    await promise;
  } catch (error) {
    const ok = typeof cls === 'string' ? error?.name === cls : error instanceof cls;
    assert.ok(ok, `expected ${expected}, got ${error?.name}: ${error?.message}`);
    return error;
  }
  assert.fail(`expected ${expected}, but the call succeeded`);
}

// Create, read by id and by name (a name with '/'), describe.
const name = `stripe/${run}/api_key`;
const created = await workos.vault.createObject({ name, value: 'sk_live_secret', context });
assert.match(created.id, /^secret_/);
assert.deepEqual(created.context, context);
assert.ok(created.versionId);
assert.ok(created.keyId);
assert.ok(created.environmentId);
assert.ok(created.updatedAt instanceof Date && !Number.isNaN(created.updatedAt.getTime()));
assert.ok(created.updatedBy.id && created.updatedBy.name);

const read = await workos.vault.readObject({ id: created.id });
assert.equal(read.value, 'sk_live_secret');
assert.equal(read.name, name);
assert.equal(read.metadata.versionId, created.versionId);

const byName = await workos.vault.readObjectByName(name);
assert.equal(byName.id, created.id);
assert.equal(byName.value, 'sk_live_secret');

const described = await workos.vault.describeObject({ id: created.id });
assert.equal(described.value, undefined);
assert.equal(described.metadata.versionId, created.versionId);

// Update with a version check; a stale check is a conflict.
const updated = await workos.vault.updateObject({
  id: created.id,
  value: 'sk_live_rotated',
  versionCheck: created.versionId,
});
assert.notEqual(updated.metadata.versionId, created.versionId);
const conflict = await rejects(
  workos.vault.updateObject({ id: created.id, value: 'lost', versionCheck: created.versionId }),
  'ConflictException',
);
assert.equal(conflict.status, 409);
assert.equal((await workos.vault.readObject({ id: created.id })).value, 'sk_live_rotated');

// Versions: the first and the current.
const versions = await workos.vault.listObjectVersions({ id: created.id });
assert.equal(versions.length, 2);
assert.equal(versions.filter((v) => v.currentVersion).length, 1);
assert.equal(versions.find((v) => v.currentVersion).id, updated.metadata.versionId);
assert.ok(versions.every((v) => v.createdAt instanceof Date && !Number.isNaN(v.createdAt.getTime())));

// List, page by page (this key's environment holds only this run's objects).
const names = [name];
for (let i = 0; i < 4; i++) {
  const more = `list/${run}/${i}`;
  await workos.vault.createObject({ name: more, value: `v${i}`, context });
  names.push(more);
}
const listed = [];
let after;
let pages = 0;
do {
  const page = await workos.vault.listObjects({ limit: 2, after });
  assert.equal(page.object, 'list');
  assert.ok(page.data.length <= 2);
  listed.push(...page.data.map((o) => o.name));
  after = page.listMetadata.after ?? undefined;
  pages += 1;
} while (after);
assert.equal(pages, 3);
assert.deepEqual([...listed].sort(), [...names].sort());
const ascending = await workos.vault.listObjects({ order: 'asc', limit: 10 });
assert.deepEqual(
  ascending.data.map((o) => o.name),
  [...listed].reverse(),
);

// Delete; then it is gone.
await workos.vault.deleteObject({ id: created.id });
await rejects(workos.vault.readObject({ id: created.id }), NotFoundException);
await rejects(workos.vault.readObjectByName(name), NotFoundException);

// Data keys.
const pair = await workos.vault.createDataKey({ context });
assert.deepEqual(pair.context, context);
assert.equal(Buffer.from(pair.dataKey.key, 'base64').length, 32);
const decrypted = await workos.vault.decryptDataKey({ keys: pair.encryptedKeys });
assert.equal(decrypted.key, pair.dataKey.key);
assert.equal(decrypted.id, pair.dataKey.id);

// Local encryption, both ways with vaultd (the Python test checks the SDK's blob over gRPC).
const sdkBlob = await workos.vault.encrypt('data from node', context, 'aad-node');
assert.equal(await workos.vault.decrypt(sdkBlob, 'aad-node'), 'data from node');
await assert.rejects(workos.vault.decrypt(sdkBlob, 'another aad'));
const fromServer = await workos.vault.decrypt(env.SERVER_BLOB, 'aad-server');
// vaultd's key-committing layout is not one the SDK reads: refused, never misread.
await assert.rejects(workos.vault.decrypt(env.COMMITTING_BLOB, 'aad-server'));

// Errors as the SDK raises them.
await rejects(workos.vault.readObject({ id: 'secret_01J00000000000000000000000' }), NotFoundException);
const badContext = await rejects(
  workos.vault.createObject({ name: `bad/${run}`, value: 'x', context: {} }),
  UnprocessableEntityException,
);
assert.equal(badContext.code, 'INVALID_KEY_CONTEXT');
const stranger = new WorkOS('sk_notakeyvaultdknowsxxxxxxxxxxxxxxxxxxxxxxxxxx', {
  apiHostname: '127.0.0.1',
  port: Number(env.VAULTD_HTTP_PORT),
  https: false,
});
await rejects(stranger.vault.listObjects(), UnauthorizedException);
const reader = new WorkOS(env.READER_API_KEY, {
  apiHostname: '127.0.0.1',
  port: Number(env.VAULTD_HTTP_PORT),
  https: false,
});
const denied = await rejects(reader.vault.createDataKey({ context }), 'GenericServerException');
assert.equal(denied.status, 403);

console.log(JSON.stringify({ sdkBlob, fromServer, updatedId: created.id, listed }));
