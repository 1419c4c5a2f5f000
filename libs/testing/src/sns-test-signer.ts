import { sign } from 'node:crypto';

/*
 * A self-signed RSA certificate generated once for these tests (openssl req -x509 -newkey rsa:2048
 * -days 36500, valid 2026-11-28 .. 2126-11-04). It stands in for the certificate SNS serves.
 */
const TEST_PRIVATE_KEY_PEM = `-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQC4ydF/rl++1M2b
UsZOLbBcZW2b4KU9+M1fDlI39j11O6TvkP3ZeWIh+MmSx6g4xIztTb4FZILvcUGI
gf4sMJwSzpljDS991xRGS+/xH11Ejj0mu/Z2032kGaXvndu87gyEURvkIrWfc0rm
f0VdpAw5+MYsw8P9kJeMaccYhPw5VU417uNKsV41cBMmP0+YPM0PKHn9bBxm/VSz
+0pburtfiRhykM8L7QekUwMNVdHfHTYVc98zjKZ3nezwtD3JYORiL2Nk534o+VFN
jcdgPlur765CcieDWqvC9YuSHL96/xJBhMLodA8oWHJ4zmKGJ43WcF09ONM6A/JH
7Tkyxa1hAgMBAAECggEAGgVNS2H2GIylwTv4MbUMUw5zT1JkYmQhI0QEft3dTJ9P
++4aWN/XWjpKxDD6Nrgysg3S9rZvG6GCnWLUtEtKBvnxrnmCWQGK2NVDndwRSaCP
6t7n91aTqCJ2c9XyRdntiEpVl5vtoFzfTLLaRTPfBuDJoy8T76ZHON4CS6kaTUZA
n8gKnVHVHr0kkL7sKAKeOP2fpF+2ui2GTsOFXIila5ef+2XdujXTqInIIfOsUFcK
uxsabTINeB9TJBd+aJ2kTX1ESFGCGAtopy5XLgvotb1du2PhcTpmND4sEYXjRjcc
T8GCDd1OyG2SFaJ7pDX/nhDTWLXAWno71SJAhirqkwKBgQD3c6+vU7WjdrmtiTaO
ljktbBG9La9zjw58ZwaxWdCMgqnYckHnlAcQRRCjdTZwlxx/1WxClUrF3Wiba0nD
M/aH2X45l0vabuiKduw7UnZBLbIoX7JpeGiSt2sHXT+yfUg+Niimve6/wwaZykIQ
FiU+kHx03W7CIxuZLYKfS3Vp3wKBgQC/K/lQhvE7Q1vNkp48BgBJzlcJGNKHpDtz
I10ll9KFoJr3LsNoynOVWyQ6n74dm9n0+vmoWA+7gknBcO0UWCLV8u9V1poBXLvU
tLuVx6bu2o60kLfeaZl4TQLi3UZw8ymIeFQAVReCsdTEBgnobFReqtFKWfYPlc1y
BHxH+apQvwKBgB2+1FGZGG6L6QoJQnulZz4kjYVWJo8XlUAzCkTrbPxXAJ+6LF3w
F2FHTBa6Ek86evyK5Tajx5c9ZEO6g+VpK6ts45V8sGuThXSPkxoWcYyoN5BO4J15
EekBD2aVOQD1umdwDzbsAfUfNn3qKELSxqtcpvlNXPENU1X4eIk5guW1AoGALstq
yaVeYy1HyXg8N2EYrPhPIbDrx7wRuUtMv6j8JS19AUh3GK2FwWd/5MG5XbIKlgbh
Ga4Em9d2il1ECxjP3iMLJq3TIMY8TAK5cB5g5FKnX9eUymJ66JGhRTr4xSkgX4Fk
vngVuy4gcKMxxazOsiWJ+XMv4fy/P0uNyGh6oi0CgYAeFmVo1WWAhiW3pa9bYTr4
A9ZwAeCOTCwNQdR2s9Iy5+ZeI1RJYmwvqD4O0yF50Fi4+4JJIRLPPEljqXa5T19g
1KtEStgubTWWvMRUbRFKjuQR08jkn0hwgVtOuKi3JXPEjjTf7i0+WPY9W5A16uIb
PbLf7ok47UPOufC3uLK9EQ==
-----END PRIVATE KEY-----`;
export const SNS_TEST_CERT_PEM = `-----BEGIN CERTIFICATE-----
MIIDGzCCAgOgAwIBAgIUW94wGF1TnASbTTpLwkAMftmP5kEwDQYJKoZIhvcNAQEL
BQAwHDEaMBgGA1UEAwwRc25zLmFtYXpvbmF3cy5jb20wIBcNMjYxMTI4MDAyMTE0
WhgPMjEyNjExMDQwMDIxMTRaMBwxGjAYBgNVBAMMEXNucy5hbWF6b25hd3MuY29t
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAuMnRf65fvtTNm1LGTi2w
XGVtm+ClPfjNXw5SN/Y9dTuk75D92XliIfjJkseoOMSM7U2+BWSC73FBiIH+LDCc
Es6ZYw0vfdcURkvv8R9dRI49Jrv2dtN9pBml753bvO4MhFEb5CK1n3NK5n9FXaQM
OfjGLMPD/ZCXjGnHGIT8OVVONe7jSrFeNXATJj9PmDzNDyh5/WwcZv1Us/tKW7q7
X4kYcpDPC+0HpFMDDVXR3x02FXPfM4ymd53s8LQ9yWDkYi9jZOd+KPlRTY3HYD5b
q++uQnIng1qrwvWLkhy/ev8SQYTC6HQPKFhyeM5ihieN1nBdPTjTOgPyR+05MsWt
YQIDAQABo1MwUTAdBgNVHQ4EFgQUOwocUNON33glfSNrU2Ou0QtwDnYwHwYDVR0j
BBgwFoAUOwocUNON33glfSNrU2Ou0QtwDnYwDwYDVR0TAQH/BAUwAwEB/zANBgkq
hkiG9w0BAQsFAAOCAQEAZ90Jm6wCco2LDc5mW3m2aN3xtgX6O+UpI2C6BmKz9gc1
Sa8x+pPOnCR/yQ+AnNHbcmVltcKoXJdThIVqXFwlbLkwIYtC+oG97FtELreEKHTI
eNNpVmR8w035waIC1QtEcgBigxtmurlyk0qevnd1JVu/eaKPqy8U34I/q36d3uXM
tghMM2Z2jzDwHXJyWSdTQ69SYMJp6dppiUDIZAihpZtCGIWwKtaTlkiWTknfzsSd
8+UozpIRd4uzeG0ZCpsuhKAoU8SN+CRsjhtQ/r5hhqtIALeKcSFZ259dc2vlshFI
4+228aNuokIyOGuZpvZED+pynUkEZfq4LtmCPdxw2A==
-----END CERTIFICATE-----`;

/** Where the test certificate is said to be: an SNS host, as the verifier requires. */
export const SNS_TEST_CERT_URL =
  'https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem';

export type SnsFields = Record<string, string>;

/** Written out independently of the implementation, straight from AWS's verification guide. */
const stringToSign = (m: SnsFields): string =>
  m.Type === 'Notification'
    ? `Message\n${m.Message}\nMessageId\n${m.MessageId}\n` +
      (m.Subject === undefined ? '' : `Subject\n${m.Subject}\n`) +
      `Timestamp\n${m.Timestamp}\nTopicArn\n${m.TopicArn}\nType\n${m.Type}\n`
    : `Message\n${m.Message}\nMessageId\n${m.MessageId}\nSubscribeURL\n${m.SubscribeURL}\n` +
      `Timestamp\n${m.Timestamp}\nToken\n${m.Token}\nTopicArn\n${m.TopicArn}\nType\n${m.Type}\n`;

/** The message with its signature by the test key, as SNS signs it (certificate at SNS_TEST_SNS_TEST_CERT_URL unless it names one). */
export const signSnsMessage = (fields: SnsFields, version: '1' | '2' = '1'): SnsFields => ({
  ...fields,
  SignatureVersion: version,
  SigningCertURL: fields.SigningCertURL ?? SNS_TEST_CERT_URL,
  Signature: sign(
    version === '1' ? 'sha1' : 'sha256',
    Buffer.from(stringToSign(fields)),
    TEST_PRIVATE_KEY_PEM,
  ).toString('base64'),
});
