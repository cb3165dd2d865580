// Creates a container in Azurite and uploads files into it under a prefix, with the Azure SDK:
// node upload.js BLOB_ENDPOINT CONTAINER PREFIX FILE...
// BLOB_ENDPOINT is http://127.0.0.1:PORT/devstoreaccount1; the account is Azurite's well-known one.
const path = require("path");
const { BlobServiceClient, StorageSharedKeyCredential } = require("@azure/storage-blob");

async function main() {
  const [endpoint, container, prefix, ...files] = process.argv.slice(2);
  const account = "devstoreaccount1";
  const key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
  const service = new BlobServiceClient(endpoint, new StorageSharedKeyCredential(account, key));
  const client = service.getContainerClient(container);
  await client.createIfNotExists();
  for (const file of files) {
    await client.getBlockBlobClient(`${prefix}/${path.basename(file)}`).uploadFile(file);
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
