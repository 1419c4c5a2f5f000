import { SendOutcomeKind } from './mail-sender';
import { InMemorySandboxMailbox } from './sandbox-mailbox';
import {
  SandboxCallbackFailure,
  SandboxCallbackPayload,
  SandboxSender,
  SandboxSenderConfig,
  sandboxConfigSchema,
  seededRandom,
} from './sandbox.sender';
import { LocalHttpServer, reply, startLocalHttpServer } from './testing/local-http-server';
import { SAMPLE_TASK_ID, SAMPLE_TRACKING_ID, sampleMail } from './testing/sample-mail';

const mailNumber = (n: number) => sampleMail({ idempotencyKey: `subtask-${n}`, trackingId: `tracking-${n}` });

describe('SandboxSender', () => {
  describe('failures', () => {
    const options = { transientRate: 0.2, permanentRate: 0.1, accountErrorRate: 0.05, ambiguousRate: 0.05 };

    const outcomesOf = async (seed: number, count: number): Promise<SendOutcomeKind[]> => {
      const sender = new SandboxSender(
        { options },
        { mailbox: new InMemorySandboxMailbox(), random: seededRandom(seed) },
      );
      const outcomes = await Promise.all(Array.from({ length: count }, (_, n) => sender.send(mailNumber(n))));
      return outcomes.map((outcome) => outcome.kind);
    };

    it('fails at the configured rates', async () => {
      const kinds = await outcomesOf(42, 4_000);
      const share = (kind: SendOutcomeKind) => kinds.filter((each) => each === kind).length / kinds.length;

      expect(share('transient')).toBeCloseTo(0.2, 1);
      expect(share('permanent')).toBeCloseTo(0.1, 1);
      expect(share('account')).toBeCloseTo(0.05, 1);
      expect(share('ambiguous')).toBeCloseTo(0.05, 1);
      expect(share('sent')).toBeCloseTo(0.6, 1);
    });

    it('repeats itself exactly for the same seed', async () => {
      const first = await outcomesOf(7, 200);

      expect(await outcomesOf(7, 200)).toEqual(first);
      expect(await outcomesOf(8, 200)).not.toEqual(first);
    });

    it('fails every mail at a rate of 1', async () => {
      const sender = new SandboxSender(
        { options: { accountErrorRate: 1 } },
        { mailbox: new InMemorySandboxMailbox() },
      );

      expect(await sender.send(sampleMail())).toEqual({
        kind: 'account',
        reason: 'sandbox: simulated account suspension',
      });
    });

    it('answers an abort during the simulated latency as transient', async () => {
      const mailbox = new InMemorySandboxMailbox();
      const sender = new SandboxSender({ options: { latencyMs: 5_000 } }, { mailbox });

      const outcome = await sender.send(sampleMail(), AbortSignal.timeout(20));

      expect(outcome.kind).toBe('transient');
      expect(mailbox.mails()).toHaveLength(0);
    });
  });

  describe('idempotency', () => {
    it('answers the same idempotency key with the same message id and accepts it once', async () => {
      const mailbox = new InMemorySandboxMailbox();
      const sender = new SandboxSender({}, { mailbox });

      const first = await sender.send(sampleMail());
      const second = await sender.send(sampleMail());

      expect(sender.supportsIdempotency).toBe(true);
      expect(first.kind).toBe('sent');
      expect(second).toEqual(first);
      expect(mailbox.mails()).toHaveLength(1);
      expect(await mailbox.accept(sampleMail())).toEqual({
        providerMessageId: first.kind === 'sent' ? first.providerMessageId : '',
        duplicate: true,
      });
    });

    it('makes the resend of an ambiguous send safe: it answers the id of the mail already accepted', async () => {
      const mailbox = new InMemorySandboxMailbox(() => 'sandbox-msg-1');
      // One draw for the fate of each send (below 0.5: ambiguous), then six for its callback plan.
      const draws = [0.1, ...Array(6).fill(0.5), 0.9, ...Array(6).fill(0.5)];
      const sender = new SandboxSender(
        { options: { ambiguousRate: 0.5 } },
        { mailbox, random: () => draws.shift() ?? 0 },
      );

      const ambiguous = await sender.send(sampleMail());
      const resent = await sender.send(sampleMail());

      expect(ambiguous.kind).toBe('ambiguous');
      expect(resent).toEqual({ kind: 'sent', providerMessageId: 'sandbox-msg-1' });
      expect(mailbox.mails()).toHaveLength(1);
    });
  });

  describe('callbacks', () => {
    let receiver: LocalHttpServer;
    const mailbox = () => new InMemorySandboxMailbox(() => 'sandbox-msg-1');

    beforeEach(async () => {
      receiver = await startLocalHttpServer(reply(200, { ok: true }));
    });

    afterEach(() => receiver.close());

    const senderWith = (options: SandboxSenderConfig['options'], failures: SandboxCallbackFailure[] = []) =>
      new SandboxSender(
        {
          options: {
            callbackUrl: `${receiver.baseUrl}/api/webhooks/sandbox/svc-1`,
            callbackDelayMs: 5,
            ...options,
          },
        },
        {
          mailbox: mailbox(),
          now: () => 1_700_000_000_000,
          callbackRetryDelaysMs: [5, 5],
          onCallbackFailure: (failure) => failures.push(failure),
        },
      );
    const receivedEvents = () =>
      receiver.requests.flatMap((request) => (JSON.parse(request.body) as SandboxCallbackPayload).events);

    it('posts delivered, then open, then click for a clicked mail', async () => {
      const sender = senderWith({ callbacks: { delivered: 0, open: 0, click: 1 } });

      await sender.send(sampleMail());
      await sender.callbacksSettled();

      expect(receiver.requests.map((request) => [request.method, request.path])).toEqual([
        ['POST', '/api/webhooks/sandbox/svc-1'],
        ['POST', '/api/webhooks/sandbox/svc-1'],
        ['POST', '/api/webhooks/sandbox/svc-1'],
      ]);
      expect(receivedEvents()).toEqual([
        {
          eventId: 'sandbox-msg-1:delivered',
          type: 'delivered',
          trackingId: SAMPLE_TRACKING_ID,
          messageId: 'sandbox-msg-1',
          email: 'reader@example.org',
          timestamp: 1_700_000_000_000,
          taskId: SAMPLE_TASK_ID,
        },
        expect.objectContaining({ eventId: 'sandbox-msg-1:open', type: 'open' }),
        expect.objectContaining({
          eventId: 'sandbox-msg-1:click',
          type: 'click',
          url: 'https://shop.example.com/spring',
        }),
      ]);
    });

    it('reports a hard bounce alone', async () => {
      const sender = senderWith({ callbacks: { delivered: 1, open: 1, hard_bounce: 1 } });

      await sender.send(sampleMail());
      await sender.callbacksSettled();

      expect(receivedEvents().map((event) => event.type)).toEqual(['hard_bounce']);
    });

    it('reports a complaint and an unsubscribe after delivery', async () => {
      const sender = senderWith({ callbacks: { delivered: 0, complaint: 1, unsubscribe: 1 } });

      await sender.send(sampleMail());
      await sender.callbacksSettled();

      expect(receivedEvents().map((event) => event.type)).toEqual(['delivered', 'unsubscribe', 'complaint']);
    });

    it('answers the send before any callback is posted', async () => {
      const sender = senderWith({ callbackDelayMs: 50 });

      const outcome = await sender.send(sampleMail());

      expect(outcome.kind).toBe('sent');
      expect(receiver.requests).toHaveLength(0);
      await sender.callbacksSettled();
      expect(receivedEvents().map((event) => event.type)).toEqual(['delivered']);
    });

    it('retries a callback the receiver refused', async () => {
      let calls = 0;
      receiver.respondWith((request, response) => reply(++calls === 1 ? 503 : 200, {})(request, response));
      const sender = senderWith({});

      await sender.send(sampleMail());
      await sender.callbacksSettled();

      expect(receivedEvents().map((event) => event.eventId)).toEqual([
        'sandbox-msg-1:delivered',
        'sandbox-msg-1:delivered',
      ]);
    });

    it('gives up after the last retry, reports it, and posts no later event out of order', async () => {
      receiver.respondWith(reply(500, {}));
      const failures: SandboxCallbackFailure[] = [];
      const sender = senderWith({ callbacks: { open: 1 } }, failures);

      await sender.send(sampleMail());
      await sender.callbacksSettled();

      expect(receivedEvents().map((event) => event.type)).toEqual(['delivered', 'delivered', 'delivered']);
      expect(failures).toEqual([
        { event: expect.objectContaining({ type: 'delivered' }), attempts: 3, reason: 'HTTP 500' },
      ]);
    });

    it('posts nothing for a duplicate send', async () => {
      const sender = senderWith({});

      await sender.send(sampleMail());
      await sender.send(sampleMail());
      await sender.callbacksSettled();

      expect(receivedEvents()).toHaveLength(1);
    });

    it('moves credentials of the callback URL into a Basic authorization header', async () => {
      const sender = new SandboxSender(
        {
          options: {
            callbackUrl: receiver.baseUrl.replace('http://', 'http://ingest:s%3Acret@'),
            callbackDelayMs: 0,
          },
        },
        { mailbox: mailbox() },
      );

      await sender.send(sampleMail());
      await sender.callbacksSettled();

      expect(receiver.requests[0].headers.authorization).toBe(
        `Basic ${Buffer.from('ingest:s:cret').toString('base64')}`,
      );
    });

    it('stops pending callbacks when closed', async () => {
      const sender = senderWith({ callbackDelayMs: 1_000 });

      await sender.send(sampleMail());
      sender.close();
      await sender.callbacksSettled();

      expect(receiver.requests).toHaveLength(0);
    });
  });

  describe('options', () => {
    it('refuses error rates that add up to more than 1', () => {
      expect(sandboxConfigSchema.options.safeParse({ transientRate: 0.6, permanentRate: 0.5 }).success).toBe(
        false,
      );
    });

    it('refuses a probability above 1', () => {
      expect(sandboxConfigSchema.options.safeParse({ callbacks: { open: 1.5 } }).success).toBe(false);
    });

    it('defaults to a provider that accepts everything and reports delivery', () => {
      expect(sandboxConfigSchema.options.parse(undefined)).toEqual({
        latencyMs: 0,
        transientRate: 0,
        permanentRate: 0,
        accountErrorRate: 0,
        ambiguousRate: 0,
        callbacks: {
          delivered: 1,
          open: 0,
          click: 0,
          soft_bounce: 0,
          hard_bounce: 0,
          complaint: 0,
          unsubscribe: 0,
        },
        callbackDelayMs: 1_000,
      });
    });
  });
});
