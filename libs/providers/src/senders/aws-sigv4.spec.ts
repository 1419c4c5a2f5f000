import { signAwsRequest } from './aws-sigv4';

/**
 * Vectors of AWS's Signature Version 4 test suite
 * (https://docs.aws.amazon.com/general/latest/gr/signature-v4-test-suite.html): fixed credentials, region
 * us-east-1, service "service", 2015-08-30T12:36:00Z, host example.amazonaws.com.
 */
describe('signAwsRequest', () => {
  const credentials = {
    accessKeyId: 'AKIDEXAMPLE',
    secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
  };
  const at = new Date('2015-08-30T12:36:00Z');
  const sign = (method: string, url: string, headers: Record<string, string> = {}, body = '') =>
    signAwsRequest({ method, url, headers, body, region: 'us-east-1', service: 'service' }, credentials, at);

  it('signs get-vanilla', () => {
    const signed = sign('GET', 'https://example.amazonaws.com/');

    expect(signed.canonicalRequest).toBe(
      [
        'GET',
        '/',
        '',
        'host:example.amazonaws.com',
        'x-amz-date:20150830T123600Z',
        '',
        'host;x-amz-date',
        'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
      ].join('\n'),
    );
    expect(signed.stringToSign).toBe(
      [
        'AWS4-HMAC-SHA256',
        '20150830T123600Z',
        '20150830/us-east-1/service/aws4_request',
        'bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63',
      ].join('\n'),
    );
    expect(signed.headers).toEqual({
      'x-amz-date': '20150830T123600Z',
      authorization:
        'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, ' +
        'SignedHeaders=host;x-amz-date, ' +
        'Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31',
    });
  });

  it('signs post-vanilla', () => {
    expect(sign('POST', 'https://example.amazonaws.com/').signature).toBe(
      '5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b',
    );
  });

  it('signs get-vanilla-query-order-key-case, sorting the query', () => {
    expect(sign('GET', 'https://example.amazonaws.com/?Param2=value2&Param1=value1').signature).toBe(
      'b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500',
    );
  });

  it('signs post-x-www-form-urlencoded, covering the content type and the body', () => {
    const signed = sign(
      'POST',
      'https://example.amazonaws.com/',
      { 'Content-Type': 'application/x-www-form-urlencoded' },
      'Param1=value1',
    );

    expect(signed.headers.authorization).toBe(
      'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, ' +
        'SignedHeaders=content-type;host;x-amz-date, ' +
        'Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a',
    );
    expect(signed.headers['content-type']).toBe('application/x-www-form-urlencoded');
  });

  it('signs get-utf8, encoding the path', () => {
    expect(sign('GET', 'https://example.amazonaws.com/ሴ').signature).toBe(
      '8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85',
    );
  });

  it('signs and sends a session token', () => {
    const signed = signAwsRequest(
      {
        method: 'POST',
        url: 'https://example.amazonaws.com/',
        headers: {},
        body: '',
        region: 'us-east-1',
        service: 'service',
      },
      { ...credentials, sessionToken: 'session-token' },
      at,
    );

    expect(signed.headers['x-amz-security-token']).toBe('session-token');
    expect(signed.headers.authorization).toContain('SignedHeaders=host;x-amz-date;x-amz-security-token,');
  });
});
