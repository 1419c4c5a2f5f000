import { ParsedMail, simpleParser } from 'mailparser';
import { Server, Socket, createServer } from 'node:net';
import { SMTPServer, SMTPServerOptions } from 'smtp-server';
import { SmtpSender, classifySmtpFailure } from './smtp.sender';
import { SAMPLE_TRACKING_ID, sampleMail } from './testing/sample-mail';
import { unusedBaseUrl } from './testing/local-http-server';

const USER = 'relay-user';
const PASS = 'relay-pass';

interface Received {
  envelope: { from: string; to: string[] };
  parsed: ParsedMail;
}

/** A real SMTP server (smtp-server) on 127.0.0.1, with PLAIN/LOGIN auth over a plain connection. */
async function startSmtpServer(hooks: Partial<SMTPServerOptions> = {}) {
  const received: Received[] = [];
  const server = new SMTPServer({
    secure: false,
    disabledCommands: ['STARTTLS'],
    allowInsecureAuth: true,
    logger: false,
    closeTimeout: 100,
    onAuth(auth, _session, callback) {
      if (auth.username === USER && auth.password === PASS) return callback(null, { user: USER });
      callback(new Error('Invalid username or password'));
    },
    onData(stream, session, callback) {
      simpleParser(stream)
        .then((parsed) => {
          received.push({
            envelope: {
              from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
              to: session.envelope.rcptTo.map((recipient) => recipient.address),
            },
            parsed,
          });
          callback();
        })
        .catch(callback);
    },
    ...hooks,
  });
  const port = await listenOn(server.server, () => server.listen(0, '127.0.0.1'));
  return { port, received, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/**
 * A scripted SMTP peer for what a real server does not do on purpose: drop the connection at a chosen step.
 * `afterMessage` runs once the terminating dot arrived, `atRcpt` when RCPT TO arrives.
 */
async function startScriptedSmtpPeer(script: {
  atRcpt?: (socket: Socket) => void;
  afterMessage: (socket: Socket) => void;
}) {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    let inData = false;
    let buffered = '';
    socket.write('220 scripted ESMTP\r\n');
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      if (inData) {
        if (!buffered.includes('\r\n.\r\n')) return;
        inData = false;
        buffered = '';
        return script.afterMessage(socket);
      }
      let end: number;
      while ((end = buffered.indexOf('\r\n')) >= 0) {
        const line = buffered.slice(0, end).toUpperCase();
        buffered = buffered.slice(end + 2);
        if (line.startsWith('EHLO') || line.startsWith('HELO')) socket.write('250 scripted\r\n');
        else if (line.startsWith('MAIL FROM')) socket.write('250 OK\r\n');
        else if (line.startsWith('RCPT TO')) {
          if (script.atRcpt) script.atRcpt(socket);
          else socket.write('250 OK\r\n');
        } else if (line === 'DATA') {
          inData = true;
          socket.write('354 go ahead\r\n');
          return;
        } else if (line === 'QUIT') socket.end('221 bye\r\n');
        else socket.write('502 not implemented\r\n');
      }
    });
  });
  const port = await listenOn(server, () => server.listen(0, '127.0.0.1'));
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

function listenOn(server: Server, listen: () => void): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.once('listening', () => {
      const address = server.address();
      if (address && typeof address === 'object') resolve(address.port);
      else reject(new Error('no port'));
    });
    listen();
  });
}

const senderFor = (
  port: number,
  auth: { user?: string; pass?: string } = { user: USER, pass: PASS },
  timeoutMs = 5_000,
) =>
  new SmtpSender({
    credentials: { host: '127.0.0.1', port, secure: false, ...auth },
    options: { timeoutMs, clientName: 'dispatcher.edm.example.com' },
  });

const rejection = (message: string, responseCode: number) =>
  Object.assign(new Error(message), { responseCode });

describe('SmtpSender', () => {
  describe('against a real SMTP server', () => {
    let server: Awaited<ReturnType<typeof startSmtpServer>>;

    afterEach(() => server.close());

    it('delivers the mail with our Message-ID, tracking and unsubscribe headers and both bodies', async () => {
      server = await startSmtpServer();

      const outcome = await senderFor(server.port).send(sampleMail());

      expect(outcome).toEqual({ kind: 'sent', providerMessageId: `${SAMPLE_TRACKING_ID}@edm.example.com` });
      const [{ envelope, parsed }] = server.received;
      expect(envelope).toEqual({ from: 'news@edm.example.com', to: ['reader@example.org'] });
      expect(parsed.messageId).toBe(`<${SAMPLE_TRACKING_ID}@edm.example.com>`);
      expect(parsed.headers.get('x-edm-tracking-id')).toBe(SAMPLE_TRACKING_ID);
      const unfoldedLine = (key: string) =>
        parsed.headerLines.find((header) => header.key === key)?.line.replace(/\r?\n(?=[ \t])/g, '');
      expect(unfoldedLine('list-unsubscribe')).toBe(
        `List-Unsubscribe: ${sampleMail().headers['List-Unsubscribe']}`,
      );
      expect(unfoldedLine('list-unsubscribe-post')).toBe('List-Unsubscribe-Post: List-Unsubscribe=One-Click');
      expect(parsed.subject).toBe('Our spring offers');
      expect(parsed.from?.value).toEqual([{ address: 'news@edm.example.com', name: 'EDM News' }]);
      expect(parsed.html).toBe(sampleMail().html);
      expect(parsed.text?.trim()).toBe(sampleMail().text);
    });

    it('treats refused credentials as a problem of the account', async () => {
      server = await startSmtpServer();

      const outcome = await senderFor(server.port, { user: USER, pass: 'wrong' }).send(sampleMail());

      expect(outcome.kind).toBe('account');
      expect(server.received).toHaveLength(0);
    });

    it('treats a recipient refused with 550 as permanent', async () => {
      server = await startSmtpServer({
        onRcptTo: (_address, _session, callback) => callback(rejection('5.1.1 No such user', 550)),
      });

      const outcome = await senderFor(server.port).send(sampleMail());

      expect(outcome.kind).toBe('permanent');
      expect(outcome.kind !== 'sent' && outcome.reason).toMatch(/550/);
    });

    it('treats a recipient deferred with 452 as transient', async () => {
      server = await startSmtpServer({
        onRcptTo: (_address, _session, callback) => callback(rejection('4.2.2 Mailbox full, try later', 452)),
      });

      expect((await senderFor(server.port).send(sampleMail())).kind).toBe('transient');
    });

    it('treats a refused sender as a problem of the account', async () => {
      server = await startSmtpServer({
        onMailFrom: (_address, _session, callback) => callback(rejection('5.7.1 Sender not allowed', 550)),
      });

      expect((await senderFor(server.port).send(sampleMail())).kind).toBe('account');
    });

    it('treats a message refused after DATA as permanent', async () => {
      server = await startSmtpServer({
        onData: (stream, _session, callback) => {
          stream.resume();
          stream.on('end', () => callback(rejection('5.7.1 Message content rejected', 554)));
        },
      });

      expect((await senderFor(server.port).send(sampleMail())).kind).toBe('permanent');
    });
  });

  describe('when the connection fails', () => {
    it('treats a server that is not listening as transient', async () => {
      const port = Number(new URL(await unusedBaseUrl()).port);

      expect((await senderFor(port).send(sampleMail())).kind).toBe('transient');
    });

    it('treats a connection dropped before the message was sent as transient', async () => {
      const peer = await startScriptedSmtpPeer({
        atRcpt: (socket) => socket.destroy(),
        afterMessage: () => undefined,
      });
      try {
        expect((await senderFor(peer.port, {}).send(sampleMail())).kind).toBe('transient');
      } finally {
        await peer.close();
      }
    });

    it('treats a connection dropped after the whole message was sent as ambiguous', async () => {
      const peer = await startScriptedSmtpPeer({ afterMessage: (socket) => socket.destroy() });
      try {
        expect((await senderFor(peer.port, {}).send(sampleMail())).kind).toBe('ambiguous');
      } finally {
        await peer.close();
      }
    });

    it('treats no answer to the sent message within the timeout as ambiguous', async () => {
      const peer = await startScriptedSmtpPeer({ afterMessage: () => undefined });
      try {
        expect((await senderFor(peer.port, {}, 300).send(sampleMail())).kind).toBe('ambiguous');
      } finally {
        await peer.close();
      }
    });

    it('answers an abort while waiting for the verdict on the message as ambiguous', async () => {
      const peer = await startScriptedSmtpPeer({ afterMessage: () => undefined });
      const controller = new AbortController();
      try {
        const sending = senderFor(peer.port, {}).send(sampleMail(), controller.signal);
        setTimeout(() => controller.abort(), 200);

        expect((await sending).kind).toBe('ambiguous');
      } finally {
        await peer.close();
      }
    });
  });
});

describe('classifySmtpFailure', () => {
  it.each([
    [
      '535 to AUTH',
      false,
      'account',
      { code: 'EAUTH', command: 'AUTH PLAIN', responseCode: 535, message: 'Bad login' },
    ],
    [
      '454 to AUTH',
      false,
      'transient',
      { code: 'EAUTH', command: 'AUTH PLAIN', responseCode: 454, message: 'Try later' },
    ],
    [
      '421 to RCPT TO',
      false,
      'transient',
      { code: 'EENVELOPE', command: 'RCPT TO', responseCode: 421, message: 'Busy' },
    ],
    [
      "SES's daily quota reply",
      false,
      'account',
      {
        code: 'EENVELOPE',
        command: 'MAIL FROM',
        responseCode: 454,
        message: 'Throttling failure: Daily message quota exceeded.',
      },
    ],
    [
      "SES's sending rate reply",
      false,
      'transient',
      {
        code: 'EENVELOPE',
        command: 'MAIL FROM',
        responseCode: 454,
        message: 'Throttling failure: Maximum sending rate exceeded.',
      },
    ],
    [
      'a 554 greeting',
      false,
      'account',
      { code: 'EPROTOCOL', command: 'CONN', responseCode: 554, message: 'Access denied' },
    ],
    [
      'a refused connection',
      false,
      'transient',
      { code: 'ESOCKET', command: 'CONN', message: 'connect ECONNREFUSED' },
    ],
    [
      'a connection lost after the message',
      true,
      'ambiguous',
      { code: 'ECONNECTION', command: 'CONN', message: 'closed' },
    ],
  ])('classifies %s (message written: %s) as %s', (_name, messageWritten, kind, error) => {
    expect(classifySmtpFailure(error, messageWritten).kind).toBe(kind);
  });

  it('says nothing reached the server only when no reply came and the message was not written', () => {
    const refused = { code: 'ESOCKET', command: 'CONN', message: 'connect ECONNREFUSED' };
    expect(classifySmtpFailure(refused, false)).toMatchObject({ kind: 'transient', notSent: true });
    const busy = { code: 'EENVELOPE', command: 'RCPT TO', responseCode: 451, message: 'try later' };
    expect(classifySmtpFailure(busy, false)).not.toHaveProperty('notSent');
  });
});
