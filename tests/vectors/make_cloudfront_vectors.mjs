// Makes cloudfront_vectors.json with the AWS SDK for JavaScript v3's CloudFront signer, so
// the Python tests compare tfbulk's signatures with an independent implementation (SHA-256
// and ECDSA, which botocore lacks) without needing node themselves. Run it again only to
// refresh the vectors:
//
//   mkdir -p /tmp/jssdk && cd /tmp/jssdk && npm install @aws-sdk/cloudfront-signer@3.1166.0
//   node tests/vectors/make_cloudfront_vectors.mjs /tmp/jssdk > tests/vectors/cloudfront_vectors.json
//
// The two keys beside this script (TEST-ONLY-*.pem) were made for these vectors and sign
// nothing else: never trust them anywhere.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const sdkFolder = process.argv[2];
if (!sdkFolder) {
  throw new Error("usage: node make_cloudfront_vectors.mjs FOLDER_WITH_THE_SDK_INSTALLED");
}
const sdkPackage = join(sdkFolder, "node_modules", "@aws-sdk", "cloudfront-signer");
const { getSignedUrl } = createRequire(join(sdkFolder, "package.json"))(
  "@aws-sdk/cloudfront-signer",
);
const here = dirname(fileURLToPath(import.meta.url));

const KEY_PAIR_ID = "KTESTVECTORS01";
const KEYS = { rsa: "TEST-ONLY-rsa-2048.pem", ec: "TEST-ONLY-ecdsa-p256.pem" };
const EXPIRES = 1767225600; // 2026-01-01T00:00:00Z
const START = 1764547200; // 2025-12-01T00:00:00Z
const CIDR = "203.0.113.0/24";
const URLS = [
  "https://d111111abcdef8.cloudfront.net/truefire/1234.mp4",
  "https://d2kum0w8xvhbpf.cloudfront.net/truefire/guitar%20101/lesson%2F03.mp4?quality=hd&lang=en",
  "https://cdn.example.com/caf%C3%A9/%E6%97%A5%E6%9C%AC.mp4",
];

// A custom policy written as botocore's build_policy writes it (DateLessThan, IpAddress,
// DateGreaterThan), handed to the SDK as it is: the SDK's own builder puts DateGreaterThan
// before IpAddress, so only policies with one of them are left to it (cases below).
function policy(resource, { start, cidr }) {
  const condition = { DateLessThan: { "AWS:EpochTime": EXPIRES } };
  if (cidr) condition.IpAddress = { "AWS:SourceIp": cidr };
  if (start) condition.DateGreaterThan = { "AWS:EpochTime": start };
  return JSON.stringify({ Statement: [{ Resource: resource, Condition: condition }] });
}

function cases() {
  const out = [];
  for (const url of URLS) out.push({ kind: "canned", url, resource: url });
  out.push({ kind: "custom", url: URLS[0], resource: URLS[0], start: START });
  out.push({ kind: "custom", url: URLS[1], resource: URLS[1], cidr: CIDR });
  out.push({
    kind: "policy",
    url: URLS[0],
    resource: "https://d111111abcdef8.cloudfront.net/truefire/*",
    start: START,
    cidr: CIDR,
  });
  out.push({ kind: "policy", url: URLS[2], resource: "https://cdn.example.com/caf*/*.mp?" });
  return out;
}

function sign(privateKey, algorithm, c) {
  const common = { keyPairId: KEY_PAIR_ID, privateKey, algorithm };
  if (c.kind === "policy") {
    return getSignedUrl({ ...common, url: c.url, policy: policy(c.resource, c) });
  }
  return getSignedUrl({
    ...common,
    url: c.url,
    dateLessThan: new Date(EXPIRES * 1000),
    dateGreaterThan: c.start ? new Date(c.start * 1000) : undefined,
    ipAddress: c.cidr,
  });
}

const vectors = [];
for (const [keyName, keyFile] of Object.entries(KEYS)) {
  const privateKey = readFileSync(join(here, keyFile), "utf8");
  for (const algorithm of ["SHA1", "SHA256"]) {
    for (const c of cases()) {
      const signedUrl = sign(privateKey, algorithm, c);
      if (!signedUrl.startsWith(c.url + (c.url.includes("?") ? "&" : "?"))) {
        throw new Error(`the SDK re-encoded ${c.url}: pick a URL it keeps as it is`);
      }
      vectors.push({
        key: keyName,
        algorithm,
        kind: c.kind,
        url: c.url,
        resource: c.resource,
        date_less_than: EXPIRES,
        date_greater_than: c.start ?? null,
        ip_address: c.cidr ?? null,
        signed_url: signedUrl,
      });
    }
  }
}
const sdkVersion = JSON.parse(readFileSync(join(sdkPackage, "package.json"), "utf8")).version;
const made = {
  made_by: `@aws-sdk/cloudfront-signer ${sdkVersion} on node ${process.version}`,
  key_pair_id: KEY_PAIR_ID,
  keys: KEYS,
  vectors,
};
process.stdout.write(`${JSON.stringify(made, null, 1)}\n`);
