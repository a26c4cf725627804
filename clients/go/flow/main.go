// Command flow runs vaultd's client flow from Go: create, read by name, a stale update that
// fails with VERSION_CONFLICT (reason and current_version_id read from ErrorInfo), list pages,
// a data key, Encrypt/Decrypt. tests/polyglot/test_go_client.py builds and runs it against a
// real vaultd; docs/CLIENTS.md shows the same code. Prints "ok <step>" per step.
package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"time"

	vaultdv1 "github.com/vaultd/vaultd/gen/go/vaultd/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func must(err error, step string) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL %s: %v\n", step, err)
		os.Exit(1)
	}
}

func check(ok bool, step string, format string, args ...interface{}) {
	if !ok {
		fmt.Fprintf(os.Stderr, "FAIL %s: "+format+"\n", append([]interface{}{step}, args...)...)
		os.Exit(1)
	}
	fmt.Println("ok", step)
}

// errorInfo is the google.rpc.ErrorInfo among a failed call's details, or nil.
func errorInfo(err error) *errdetails.ErrorInfo {
	for _, detail := range status.Convert(err).Details() {
		if info, ok := detail.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

func main() {
	address, key, suffix := os.Getenv("VAULTD_ADDRESS"), os.Getenv("VAULTD_API_KEY"), os.Getenv("VAULTD_SUFFIX")
	conn, err := grpc.Dial(address, grpc.WithInsecure())
	must(err, "dial")
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
	objects := vaultdv1.NewObjectServiceClient(conn)
	keys := vaultdv1.NewKeyServiceClient(conn)
	tenant := map[string]string{"organization_id": "org_go_" + suffix}
	prefix := "go-" + suffix + "-"

	created, err := objects.CreateObject(ctx, &vaultdv1.CreateObjectRequest{
		Name: prefix + "db-password", Value: []byte("hunter2"), KeyContext: tenant,
	})
	must(err, "create")
	first := created.GetMetadata().GetVersionId()
	check(first != "", "create", "no version id")

	byName, err := objects.GetObjectByName(ctx, &vaultdv1.GetObjectByNameRequest{Name: prefix + "db-password"})
	must(err, "read by name")
	check(bytes.Equal(byName.GetObject().GetValue(), []byte("hunter2")), "read by name", "value %q", byName.GetObject().GetValue())

	id := created.GetMetadata().GetId()
	updated, err := objects.UpdateObject(ctx, &vaultdv1.UpdateObjectRequest{Id: id, Value: []byte("v2"), VersionCheck: &first})
	must(err, "update")
	_, err = objects.UpdateObject(ctx, &vaultdv1.UpdateObjectRequest{Id: id, Value: []byte("v3"), VersionCheck: &first})
	info := errorInfo(err)
	check(status.Code(err) == codes.Aborted && info != nil && info.GetDomain() == "vaultd" &&
		info.GetReason() == "VERSION_CONFLICT" &&
		info.GetMetadata()["current_version_id"] == updated.GetMetadata().GetVersionId(),
		"stale update", "got %v, %v", err, info)

	for i := 0; i < 2; i++ {
		_, err := objects.CreateObject(ctx, &vaultdv1.CreateObjectRequest{
			Name: fmt.Sprintf("%spage-%d", prefix, i), Value: []byte("x"), KeyContext: tenant,
		})
		must(err, "create for paging")
	}
	var names []string
	after := ""
	for pages := 0; ; pages++ {
		page, err := objects.ListObjects(ctx, &vaultdv1.ListObjectsRequest{Limit: 2, NamePrefix: prefix, After: after})
		must(err, "list")
		for _, o := range page.GetObjects() {
			names = append(names, o.GetName())
		}
		after = page.GetListMetadata().GetAfter()
		if after == "" {
			check(len(names) == 3 && pages == 1, "list pages", "names %v over %d pages", names, pages+1)
			break
		}
	}

	dataKey, err := keys.CreateDataKey(ctx, &vaultdv1.CreateDataKeyRequest{KeyContext: tenant})
	must(err, "data key")
	again, err := keys.DecryptDataKey(ctx, &vaultdv1.DecryptDataKeyRequest{EncryptedKeys: dataKey.GetEncryptedKeys()})
	must(err, "decrypt data key")
	check(len(dataKey.GetDataKey()) == 32 && bytes.Equal(again.GetDataKey(), dataKey.GetDataKey()), "data key", "keys differ")

	sealed, err := keys.Encrypt(ctx, &vaultdv1.EncryptRequest{Plaintext: []byte("from go"), KeyContext: tenant, AssociatedData: []byte("aad")})
	must(err, "encrypt")
	opened, err := keys.Decrypt(ctx, &vaultdv1.DecryptRequest{Ciphertext: sealed.GetCiphertext(), AssociatedData: []byte("aad")})
	must(err, "decrypt")
	check(bytes.Equal(opened.GetPlaintext(), []byte("from go")), "encrypt and decrypt", "got %q", opened.GetPlaintext())
}
