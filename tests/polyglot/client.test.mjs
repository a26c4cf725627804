// A vaultd client in Node.js, written from docs/FORMAT.md and protos/ alone, and its tests.
//
// Run by tests/polyglot/test_node_client.py against a live vaultd:
//   VAULTD_ADDRESS=127.0.0.1:50051 [VAULTD_API_KEY=sk_...] [VAULTD_PYTHON_BLOB=/path/blob.json] \
//     node --test client.test.mjs
// Without VAULTD_ADDRESS only the test vectors run (the live tests are skipped, and the pytest
// side fails on any skip). VAULTD_PYTHON_BLOB names a JSON file {blob, associated_data,
// plaintext} (base64) holding a blob the Python client sealed.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import protoFiles from 'google-proto-files';
import protobuf from 'protobufjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PROTOS = path.resolve(HERE, '../../protos');
const VECTORS = path.resolve(HERE, '../vectors');
const ADDRESS = process.env.VAULTD_ADDRESS;
const API_KEY = process.env.VAULTD_API_KEY;
const PYTHON_BLOB = process.env.VAULTD_PYTHON_BLOB;
const LIVE = ADDRESS ? false : 'VAULTD_ADDRESS is not set';

// --- docs/FORMAT.md -------------------------------------------------------------------------

const IV_BYTES = 12;
const TAG_BYTES = 16;
const HEADER = IV_BYTES + TAG_BYTES;
const MAX_ENCRYPTED_KEYS = 1308; // FORMAT.md 3.1
const MAX_LENGTH_BYTES = 2; // FORMAT.md 4.2
const DEK_BYTES = 32;

// Every refusal is one error (FORMAT.md 7); `step` says which reading step refused (8).
class DecryptionFailed extends Error {
  constructor(step, why) {
    super(`${step}: ${why}`);
    this.step = step;
    this.code = 'INVALID_ARGUMENT';
    this.reason = 'DECRYPTION_FAILED';
  }
}

function refuse(step, why) {
  throw new DecryptionFailed(step, why);
}

function encodeLength(n) {
  return n < 0x80 ? Buffer.from([n]) : Buffer.from([0x80 | (n & 0x7f), n >> 7]);
}

// FORMAT.md 4.2: unsigned LEB128 at offset 28, at most 2 bytes, shortest form only.
function readLength(blob, start = HEADER) {
  let value = 0;
  for (let i = 0; i < MAX_LENGTH_BYTES; i++) {
    const at = start + i;
    if (at >= blob.length) refuse('blob', 'ends inside the encrypted_keys length');
    const byte = blob[at];
    value |= (byte & 0x7f) << (7 * i);
    if ((byte & 0x80) === 0) {
      if (i > 0 && byte === 0) refuse('blob', 'overlong encrypted_keys length');
      return [value, at + 1];
    }
  }
  return refuse('blob', 'encrypted_keys length longer than 2 bytes');
}

// FORMAT.md 4.3 steps 1-3.
// FORMAT.md 4.4: a zero byte then 0x43 after the tag marks the key-committing variant.
function parseBlob(blob) {
  if (blob.length < HEADER) refuse('blob', 'shorter than IV and tag');
  const committing = blob.length > HEADER && blob[HEADER] === 0;
  if (committing && (blob.length < HEADER + 2 || blob[HEADER + 1] !== 0x43)) {
    refuse('blob', 'unknown variant');
  }
  const [length, at] = readLength(blob, committing ? HEADER + 2 : HEADER);
  if (length < 1 || length > MAX_ENCRYPTED_KEYS) refuse('blob', `encrypted_keys length ${length}`);
  if (at + length > blob.length) refuse('blob', 'ends inside encrypted_keys');
  const end = at + length;
  if (committing && end + 32 > blob.length) refuse('blob', 'ends inside the key commitment');
  return {
    iv: blob.subarray(0, IV_BYTES),
    tag: blob.subarray(IV_BYTES, HEADER),
    encryptedKeys: blob.subarray(at, end),
    commitment: committing ? blob.subarray(end, end + 32) : null,
    ciphertext: blob.subarray(committing ? end + 32 : end),
  };
}

// FORMAT.md 3.3.
function parseEncryptedKeys(bytes) {
  const step = 'encrypted_keys';
  if (bytes.length > MAX_ENCRYPTED_KEYS) refuse(step, 'too long');
  let at = 0;
  const take = (n) => {
    if (at + n > bytes.length) refuse(step, 'truncated');
    const out = bytes.subarray(at, at + n);
    at += n;
    return out;
  };
  const formatVersion = take(1)[0];
  if (formatVersion !== 1 && formatVersion !== 2) refuse(step, 'unknown format version');
  const dekId = take(16);
  const count = take(1)[0];
  if (count < 1 || count > 10) refuse(step, `entry count ${count}`);
  const entries = [];
  for (let i = 0; i < count; i++) {
    const idLength = take(1)[0];
    if (idLength < 1 || idLength > 64) refuse(step, `KEK id length ${idLength}`);
    const id = take(idLength);
    if (id.some((b) => b >= 0x80)) refuse(step, 'KEK id is not ASCII');
    const version = take(4).readUInt32BE(0);
    if (version === 0) refuse(step, 'KEK version 0');
    entries.push({ kekId: id.toString('latin1'), version, nonce: take(12), wrapped: take(48) });
  }
  if (at !== bytes.length) refuse(step, 'trailing bytes');
  return { formatVersion, dekId, entries };
}

// FORMAT.md 3.2: a client only ever holds data keys, so format 2 means the data-key label.
function entryAad(formatVersion, dekId, kekId, version) {
  const v = Buffer.alloc(4);
  v.writeUInt32BE(version);
  const label = formatVersion === 1 ? 'vaultd/dek/v1\0' : 'vaultd/data-key/v2\0';
  return Buffer.concat([
    Buffer.from(label, 'latin1'), dekId,
    Buffer.from(kekId, 'latin1'), Buffer.from([0]), v,
  ]);
}

function gcmOpen(key, iv, ciphertext, tag, aad) {
  const decipher = crypto.createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  } catch {
    return null; // the tag did not verify: release nothing
  }
}

function gcmSeal(key, iv, plaintext, aad) {
  const cipher = crypto.createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { ciphertext, tag: cipher.getAuthTag() };
}

function unwrapEntry(keys, entry, kek) {
  const { wrapped } = entry;
  return gcmOpen(kek, entry.nonce, wrapped.subarray(0, DEK_BYTES), wrapped.subarray(DEK_BYTES),
    entryAad(keys.formatVersion, keys.dekId, entry.kekId, entry.version));
}

// FORMAT.md 4.1: what a client writes after CreateDataKey.
function sealBlob(dataKey, encryptedKeys, plaintext, aad) {
  const iv = crypto.randomBytes(IV_BYTES);
  const { ciphertext, tag } = gcmSeal(dataKey, iv, plaintext, aad);
  return Buffer.concat([iv, tag, encodeLength(encryptedKeys.length), encryptedKeys, ciphertext]);
}

const hmac = (key, label) => crypto.createHmac('sha256', key).update(label, 'latin1').digest();

// FORMAT.md 4.3 step 5, and 4.4: a committing blob must commit to this data key, and is sealed
// under the key derived from it.
function openBlob(dataKey, parsed, aad) {
  let key = dataKey;
  if (parsed.commitment !== null) {
    const expected = hmac(dataKey, 'vaultd/local-blob/v1/key-commitment');
    if (!crypto.timingSafeEqual(expected, parsed.commitment)) {
      refuse('data', 'the blob does not commit to this data key');
    }
    key = hmac(dataKey, 'vaultd/local-blob/v1/encryption-key');
  }
  const plaintext = gcmOpen(key, parsed.iv, parsed.ciphertext, parsed.tag, aad);
  if (plaintext === null) refuse('data', 'ciphertext or associated data does not authenticate');
  return plaintext;
}

// FORMAT.md 2.
function kekIdFor(environmentId, itemKey, itemValue) {
  const material = ['vaultd/kek-id/v1', environmentId, itemKey, itemValue].join('\0');
  return 'kek_' + crypto.createHash('sha256').update(material, 'utf8').digest('hex').slice(0, 32);
}

// --- the test vectors (FORMAT.md 8) ----------------------------------------------------------

const b64 = (text) => Buffer.from(text, 'base64');
const aadOf = (vector) => b64(vector.associated_data ?? ''); // null and "" are both no AAD

function plaintextOf(vector) {
  if (typeof vector.plaintext === 'string') return b64(vector.plaintext);
  const pattern = Buffer.from(vector.plaintext.repeat_hex, 'hex');
  const out = Buffer.alloc(vector.plaintext.length);
  for (let at = 0; at < out.length; at += pattern.length) pattern.copy(out, at);
  return out;
}

// The four steps of FORMAT.md 8; each refusal carries its step.
function readVector(vector) {
  const parsed = parseBlob(b64(vector.blob));
  const keys = parseEncryptedKeys(parsed.encryptedKeys);
  const keks = new Map(vector.keks.map((k) => [`${k.kek_id}\0${k.version}`, b64(k.key)]));
  let dataKey = null;
  for (const entry of keys.entries) {
    const kek = keks.get(`${entry.kekId}\0${entry.version}`);
    dataKey = kek === undefined ? null : unwrapEntry(keys, entry, kek);
    if (dataKey !== null) break;
  }
  if (dataKey === null) refuse('entry', 'no entry authenticates');
  return { parsed, keys, plaintext: openBlob(dataKey, parsed, aadOf(vector)) };
}

const vectors = fs.readdirSync(VECTORS)
  .filter((name) => name.endsWith('.json'))
  .sort()
  .flatMap((name) => JSON.parse(fs.readFileSync(path.join(VECTORS, name), 'utf8')).vectors);

test('the vectors are all there', () => {
  assert.ok(vectors.filter((v) => v.valid).length >= 12);
  assert.ok(vectors.filter((v) => !v.valid).length >= 40);
});

for (const vector of vectors) {
  test(`vector ${vector.valid ? 'opens' : 'is refused'}: ${vector.name}`, () => {
    if (!vector.valid) {
      assert.throws(() => readVector(vector), (error) => {
        assert.ok(error instanceof DecryptionFailed, String(error));
        assert.equal(error.step, vector.fails_at, error.message);
        assert.equal(error.reason, vector.error_reason);
        assert.equal(error.code, vector.error_code);
        return true;
      });
      return;
    }
    const blob = b64(vector.blob);
    const dataKey = b64(vector.data_key);
    const { parsed, keys, plaintext } = readVector(vector);
    assert.deepEqual(plaintext, plaintextOf(vector));
    assert.deepEqual(parsed.encryptedKeys, b64(vector.encrypted_keys));
    assert.deepEqual(keys.dekId, b64(vector.dek_id));
    const committing = parsed.commitment !== null;
    assert.equal(committing, vector.blob_variant === 'committing');
    assert.deepEqual(
      Buffer.concat([parsed.iv, parsed.tag, committing ? Buffer.from([0, 0x43]) : Buffer.alloc(0),
        encodeLength(parsed.encryptedKeys.length), parsed.encryptedKeys,
        committing ? parsed.commitment : Buffer.alloc(0), parsed.ciphertext]),
      blob, 'not the canonical encoding');
    assert.deepEqual(keys.entries.map((e) => `${e.kekId}.v${e.version}`), vector.key_ids);
    keys.entries.forEach((entry, i) => {
      assert.equal(entry.kekId, vector.keks[i].kek_id);
      assert.deepEqual(unwrapEntry(keys, entry, b64(vector.keks[i].key)), dataKey);
    });
    if (vector.kek_ids_derived) {
      // Item keys in code point order, which is UTF-8 byte order (not JS's UTF-16 order).
      const items = Object.entries(vector.key_context)
        .sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      assert.deepEqual(keys.entries.map((e) => e.kekId),
        items.map(([k, v]) => kekIdFor(vector.environment_id, k, v)));
    }
  });
}

// --- against a live vaultd --------------------------------------------------------------------

let services;
function stubs() {
  if (!services) {
    const definition = protoLoader.loadSync(
      ['vaultd/v1/object_service.proto', 'vaultd/v1/key_service.proto'],
      { includeDirs: [PROTOS], keepCase: true, longs: String, enums: String, defaults: true },
    );
    const v1 = grpc.loadPackageDefinition(definition).vaultd.v1;
    const credentials = grpc.credentials.createInsecure();
    services = {
      objects: new v1.ObjectService(ADDRESS, credentials),
      keys: new v1.KeyService(ADDRESS, credentials),
    };
  }
  return services;
}

function call(service, method, request) {
  const metadata = new grpc.Metadata();
  if (API_KEY) metadata.set('authorization', `Bearer ${API_KEY}`);
  const deadline = new Date(Date.now() + 10_000);
  return new Promise((resolve, reject) => {
    stubs()[service][method](request, metadata, { deadline }, (error, response) => (
      error ? reject(error) : resolve(response)));
  });
}

// google.rpc.Status and its details, decoded with protobufjs from the googleapis protos that
// google-proto-files ships: the status travels in the `grpc-status-details-bin` trailer, each
// detail an Any whose type_url names its message.
const rpcProtos = new protobuf.Root().loadSync(
  ['rpc/status.proto', 'rpc/error_details.proto'].map((file) => protoFiles.getProtoPath(file)),
  { keepCase: true },
);
const RpcStatus = rpcProtos.lookupType('google.rpc.Status');

// Every detail of a failed call, keyed by message name ("google.rpc.ErrorInfo", ...).
function detailsOf(error) {
  const [raw] = error.metadata.get('grpc-status-details-bin');
  const status = RpcStatus.decode(raw);
  const details = {};
  for (const any of status.details) {
    const name = any.type_url.split('/').pop();
    const type = rpcProtos.lookupType(name);
    details[name] = type.toObject(type.decode(any.value));
  }
  return details;
}

function reasonOf(error) {
  return detailsOf(error)['google.rpc.ErrorInfo']?.reason ?? null;
}

async function assertDecryptionFailed(promise) {
  await assert.rejects(promise, (error) => {
    assert.equal(error.code, grpc.status.INVALID_ARGUMENT, error.message);
    assert.equal(reasonOf(error), 'DECRYPTION_FAILED');
    return true;
  });
}

// Unique items only: a KEK another vaultd of the test session made for a fixed item may be
// wrapped under a root key this one does not have.
const unique = () => crypto.randomBytes(6).toString('hex');
const tenant = () => ({ organization_id: `org_node_${unique()}` });

test('creates an object and reads it back', { skip: LIVE }, async () => {
  const name = `node-${unique()}`;
  const context = tenant();
  const value = Buffer.from('a secret from node');
  const { metadata } = await call('objects', 'CreateObject', { name, value, key_context: context });
  assert.match(metadata.id, /^secret_[0-9A-Z]{26}$/);
  assert.deepEqual({ ...metadata.key_context }, context);
  assert.equal(metadata.key_ids.length, 1);
  assert.match(metadata.key_ids[0], /^kek_[0-9a-f]{32}\.v[1-9][0-9]*$/);
  const byId = await call('objects', 'GetObject', { id: metadata.id });
  assert.deepEqual(byId.object.value, value);
  assert.equal(byId.object.metadata.version_id, metadata.version_id);
  const byName = await call('objects', 'GetObjectByName', { name });
  assert.deepEqual(byName.object.value, value);
});

test('runs the full flow: by name, stale update, list pages, data key, Encrypt/Decrypt', { skip: LIVE }, async () => {
  const context = tenant();
  const prefix = `node-flow-${unique()}-`;
  const created = await call('objects', 'CreateObject', {
    name: `${prefix}db-password`, value: Buffer.from('hunter2'), key_context: context,
  });
  const first = created.metadata.version_id;
  const { object } = await call('objects', 'GetObjectByName', { name: `${prefix}db-password` });
  assert.equal(object.value.toString(), 'hunter2');

  const { id } = created.metadata;
  const updated = await call('objects', 'UpdateObject', { id, value: Buffer.from('v2'), version_check: first });
  await assert.rejects(
    call('objects', 'UpdateObject', { id, value: Buffer.from('v3'), version_check: first }),
    (error) => {
      assert.equal(error.code, grpc.status.ABORTED, error.message);
      const info = detailsOf(error)['google.rpc.ErrorInfo'];
      assert.equal(info.domain, 'vaultd');
      assert.equal(info.reason, 'VERSION_CONFLICT');
      assert.equal(info.metadata.current_version_id, updated.metadata.version_id);
      return true;
    },
  );

  for (const i of [0, 1]) {
    await call('objects', 'CreateObject', { name: `${prefix}page-${i}`, value: Buffer.from('x'), key_context: context });
  }
  const names = [];
  let after = '';
  let pages = 0;
  do {
    const page = await call('objects', 'ListObjects', { limit: 2, name_prefix: prefix, after });
    pages += 1;
    names.push(...page.objects.map((o) => o.name));
    after = page.list_metadata.after;
  } while (after);
  assert.equal(names.length, 3);
  assert.equal(pages, 2);

  // Version numbers (uint64, loaded as strings) and reads and lists by key context.
  assert.equal(created.metadata.version_number, '1');
  assert.equal(updated.metadata.version_number, '2');
  const mine = await call('objects', 'ListObjects', { limit: 100, key_context: context });
  assert.equal(mine.objects.length, 3);
  const read = await call('objects', 'GetObject', { id, key_context: context });
  assert.equal(read.object.value.toString(), 'v2');
  await assert.rejects(call('objects', 'GetObject', { id, key_context: tenant() }), (error) => {
    assert.equal(error.code, grpc.status.NOT_FOUND, error.message);
    return true;
  });

  const dataKey = await call('keys', 'CreateDataKey', { key_context: context });
  const again = await call('keys', 'DecryptDataKey', { encrypted_keys: dataKey.encrypted_keys });
  assert.equal(dataKey.data_key.length, 32);
  assert.deepEqual(again.data_key, dataKey.data_key);

  const aad = Buffer.from('aad');
  const sealed = await call('keys', 'Encrypt', { plaintext: Buffer.from('from node'), key_context: context, associated_data: aad });
  const opened = await call('keys', 'Decrypt', { ciphertext: sealed.ciphertext, associated_data: aad });
  assert.equal(opened.plaintext.toString(), 'from node');
});

test('creates a data key whose encrypted_keys follows FORMAT.md', { skip: LIVE }, async () => {
  const context = { ...tenant(), user_id: `user_node_${unique()}` };
  const created = await call('keys', 'CreateDataKey', { key_context: context });
  assert.equal(created.data_key.length, 32);
  assert.equal(created.encrypted_keys.indexOf(created.data_key), -1);
  const keys = parseEncryptedKeys(created.encrypted_keys);
  assert.deepEqual(keys.entries.map((e) => `${e.kekId}.v${e.version}`), created.key_ids);
  const { encrypted_keys } = created;
  const decrypted = await call('keys', 'DecryptDataKey', { encrypted_keys });
  assert.equal(decrypted.id, created.id);
  assert.deepEqual(decrypted.data_key, created.data_key);
});

for (const aad of [null, Buffer.from('row 42 of payments')]) {
  test(`seals locally, the server's Decrypt opens it (${aad ? 'with' : 'no'} associated data)`,
    { skip: LIVE }, async () => {
      const key = await call('keys', 'CreateDataKey', { key_context: tenant() });
      const plaintext = Buffer.from('sealed by node:crypto');
      const blob = sealBlob(key.data_key, key.encrypted_keys, plaintext, aad ?? Buffer.alloc(0));
      const decrypt = (ciphertext, associated_data) => call('keys', 'Decrypt', { ciphertext, associated_data });
      const opened = await decrypt(blob, aad ?? Buffer.alloc(0));
      assert.deepEqual(opened.plaintext, plaintext);
      await assertDecryptionFailed(decrypt(blob, Buffer.from('other')));
      const flipped = Buffer.from(blob);
      flipped[flipped.length - 1] ^= 1;
      await assertDecryptionFailed(decrypt(flipped, aad ?? Buffer.alloc(0)));
    });
}

test("opens the server's Encrypt locally", { skip: LIVE }, async () => {
  const aad = Buffer.from('server sealed');
  const request = { plaintext: Buffer.from('from vaultd'), key_context: tenant(), associated_data: aad };
  const { ciphertext } = await call('keys', 'Encrypt', request);
  const parsed = parseBlob(ciphertext);
  const key = await call('keys', 'DecryptDataKey', { encrypted_keys: parsed.encryptedKeys });
  assert.deepEqual(openBlob(key.data_key, parsed, aad), Buffer.from('from vaultd'));
  assert.throws(() => openBlob(key.data_key, parsed, Buffer.alloc(0)), DecryptionFailed);
});

const NO_PYTHON_BLOB = !PYTHON_BLOB && 'VAULTD_PYTHON_BLOB is not set';
test('opens a blob the Python client sealed', { skip: LIVE || NO_PYTHON_BLOB }, async () => {
  const sealed = JSON.parse(fs.readFileSync(PYTHON_BLOB, 'utf8'));
  const parsed = parseBlob(b64(sealed.blob));
  const key = await call('keys', 'DecryptDataKey', { encrypted_keys: parsed.encryptedKeys });
  const opened = openBlob(key.data_key, parsed, b64(sealed.associated_data));
  assert.deepEqual(opened, b64(sealed.plaintext));
});

after(() => {
  if (services) Object.values(services).forEach((client) => client.close());
});
