# vaultd's client flow from Ruby: create, read by name, a stale update that fails with
# VERSION_CONFLICT (reason and current_version_id read from ErrorInfo), list pages, a data key,
# Encrypt/Decrypt. tests/polyglot/test_ruby_client.py runs it against a real vaultd with
# `ruby -I gen/ruby clients/ruby/flow.rb`; docs/CLIENTS.md shows the same code.
# Prints "ok <step>" per step; exits 1 at the first failure.
require 'grpc'
require 'google/protobuf/well_known_types' # Any#unpack
require 'google/rpc/error_details_pb'
require 'vaultd/v1/object_service_services_pb'
require 'vaultd/v1/key_service_services_pb'

def check(ok, step, detail = nil)
  unless ok
    warn "FAIL #{step}: #{detail}"
    exit 1
  end
  puts "ok #{step}"
end

# The google.rpc.ErrorInfo among a failed call's details, or nil.
def error_info(error)
  status = error.to_rpc_status
  return nil if status.nil?
  status.details.each do |any|
    info = any.unpack(Google::Rpc::ErrorInfo)
    return info if info
  end
  nil
end

address = ENV.fetch('VAULTD_ADDRESS')
auth = { metadata: { 'authorization' => "Bearer #{ENV.fetch('VAULTD_API_KEY')}" } }
suffix = ENV.fetch('VAULTD_SUFFIX', 'demo')
objects = Vaultd::V1::ObjectService::Stub.new(address, :this_channel_is_insecure)
keys = Vaultd::V1::KeyService::Stub.new(address, :this_channel_is_insecure)
tenant = { 'organization_id' => "org_ruby_#{suffix}" }
prefix = "ruby-#{suffix}-"

created = objects.create_object(
  Vaultd::V1::CreateObjectRequest.new(name: "#{prefix}db-password", value: 'hunter2', key_context: tenant), auth
)
first = created.metadata.version_id
check(!first.empty?, 'create', 'no version id')

by_name = objects.get_object_by_name(Vaultd::V1::GetObjectByNameRequest.new(name: "#{prefix}db-password"), auth)
check(by_name.object.value == 'hunter2', 'read by name', by_name.object.value.inspect)

id = created.metadata.id
updated = objects.update_object(Vaultd::V1::UpdateObjectRequest.new(id: id, value: 'v2', version_check: first), auth)
begin
  objects.update_object(Vaultd::V1::UpdateObjectRequest.new(id: id, value: 'v3', version_check: first), auth)
  check(false, 'stale update', 'the stale update succeeded')
rescue GRPC::Aborted => e
  info = error_info(e)
  check(info && info.domain == 'vaultd' && info.reason == 'VERSION_CONFLICT' &&
        info.metadata['current_version_id'] == updated.metadata.version_id,
        'stale update', info.inspect)
end

2.times do |i|
  objects.create_object(
    Vaultd::V1::CreateObjectRequest.new(name: "#{prefix}page-#{i}", value: 'x', key_context: tenant), auth
  )
end
names = []
after = ''
pages = 0
loop do
  page = objects.list_objects(Vaultd::V1::ListObjectsRequest.new(limit: 2, name_prefix: prefix, after: after), auth)
  pages += 1
  names.concat(page.objects.map(&:name))
  after = page.list_metadata.after
  break if after.empty?
end
check(names.length == 3 && pages == 2, 'list pages', "#{names} over #{pages} pages")

data_key = keys.create_data_key(Vaultd::V1::CreateDataKeyRequest.new(key_context: tenant), auth)
again = keys.decrypt_data_key(Vaultd::V1::DecryptDataKeyRequest.new(encrypted_keys: data_key.encrypted_keys), auth)
check(data_key.data_key.bytesize == 32 && again.data_key == data_key.data_key, 'data key', 'keys differ')

sealed = keys.encrypt(
  Vaultd::V1::EncryptRequest.new(plaintext: 'from ruby', key_context: tenant, associated_data: 'aad'), auth
)
opened = keys.decrypt(Vaultd::V1::DecryptRequest.new(ciphertext: sealed.ciphertext, associated_data: 'aad'), auth)
check(opened.plaintext == 'from ruby', 'encrypt and decrypt', opened.plaintext.inspect)
