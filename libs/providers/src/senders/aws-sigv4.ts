import { createHash, createHmac } from 'node:crypto';

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface AwsRequestToSign {
  method: string;
  url: string;
  /** Headers to sign and send; `host` is taken from the URL, the way fetch sends it. */
  headers: Record<string, string>;
  body: string;
  region: string;
  service: string;
}

export interface SignedAwsRequest {
  /** Lower-cased headers to send, with `authorization` and `x-amz-date`, without `host`. */
  headers: Record<string, string>;
  canonicalRequest: string;
  stringToSign: string;
  signature: string;
}

/**
 * AWS Signature Version 4 for a request with a header-carried signature
 * (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html), checked against AWS's
 * published test suite.
 */
export function signAwsRequest(
  request: AwsRequestToSign,
  credentials: AwsCredentials,
  now: Date,
): SignedAwsRequest {
  const url = new URL(request.url);
  const amzDate = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
  const dateStamp = amzDate.slice(0, 8);
  const headers: Record<string, string> = { 'x-amz-date': amzDate };
  for (const [name, value] of Object.entries(request.headers)) headers[name.toLowerCase()] = value;
  if (credentials.sessionToken) headers['x-amz-security-token'] = credentials.sessionToken;
  const toSign: Record<string, string> = { ...headers, host: url.host };

  const names = Object.keys(toSign).sort();
  const signedHeaders = names.join(';');
  const canonicalRequest = [
    request.method.toUpperCase(),
    canonicalPath(url.pathname),
    canonicalQuery(url.searchParams),
    names.map((name) => `${name}:${toSign[name].trim().replace(/\s+/g, ' ')}\n`).join(''),
    signedHeaders,
    sha256Hex(request.body),
  ].join('\n');
  const scope = `${dateStamp}/${request.region}/${request.service}/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256Hex(canonicalRequest)].join('\n');
  const signingKey = [dateStamp, request.region, request.service, 'aws4_request'].reduce<Buffer>(
    (key, part) => hmac(key, part),
    Buffer.from(`AWS4${credentials.secretAccessKey}`),
  );
  const signature = hmac(signingKey, stringToSign).toString('hex');
  headers.authorization =
    `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${scope}, ` +
    `SignedHeaders=${signedHeaders}, Signature=${signature}`;
  return { headers, canonicalRequest, stringToSign, signature };
}

const sha256Hex = (data: string): string => createHash('sha256').update(data, 'utf8').digest('hex');

const hmac = (key: Buffer, data: string): Buffer => createHmac('sha256', key).update(data, 'utf8').digest();

/** RFC 3986 unreserved characters stay; everything else is percent-encoded, as SigV4 requires. */
const uriEncode = (value: string): string =>
  encodeURIComponent(value).replace(
    /[!'()*]/g,
    (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`,
  );

function canonicalPath(pathname: string): string {
  return pathname
    .split('/')
    .map((segment) => uriEncode(decodeURIComponent(segment)))
    .join('/');
}

function canonicalQuery(params: URLSearchParams): string {
  return [...params]
    .map(([name, value]) => [uriEncode(name), uriEncode(value)] as const)
    .sort(([nameA, valueA], [nameB, valueB]) =>
      nameA === nameB ? compare(valueA, valueB) : compare(nameA, nameB),
    )
    .map(([name, value]) => `${name}=${value}`)
    .join('&');
}

/** Byte order (code unit order for the ASCII the encoding leaves), not locale order. */
const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
