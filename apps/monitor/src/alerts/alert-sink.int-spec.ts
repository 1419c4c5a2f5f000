import { createServer, Server, ServerResponse } from 'node:http';
import { AddressInfo } from 'node:net';
import { DataSource } from 'typeorm';
import { uuidv7 } from '@edm/event-store';
import { JsonLogger } from '@edm/observability';
import { createDataSource, runMigrations } from '@edm/persistence';
import { createTestEnvironment, eventually, TestEnvironment } from '@edm/testing';
import { AlertCondition } from './alert-rules';
import { AlertSink, alertMessageBody } from './alert-sink';

/** The sink against a real database and a webhook of the test's own that answers, fails or hangs. */
describe('AlertSink (Postgres + a local webhook)', () => {
  let env: TestEnvironment;
  let db: DataSource;
  let sinkDb: DataSource;
  let server: Server;
  let url: string;
  let sink: AlertSink;
  /** How the webhook answers the next requests. */
  let mode: 'up' | 'down' | 'hang' = 'up';
  /** Titles of the messages the webhook accepted, in order. */
  let received: string[] = [];
  const hanging: ServerResponse[] = [];

  const newSink = () =>
    new AlertSink(sinkDb, new JsonLogger('test', 'silent'), env.config({ MONITOR_ALERT_WEBHOOK_URL: url }));

  /** A firing alert row, as the alerts projection writes it with AlertRaised. */
  const alert = async (kind: string, subject: string) => {
    const id = uuidv7();
    await db.query(
      `INSERT INTO alerts (id, kind, subject, severity, message, details, status, first_seen_at)
       VALUES ($1, $2, $3, 'warning', 'm', '{}', 'firing', now())`,
      [id, kind, subject],
    );
    const condition: AlertCondition = {
      kind,
      subject,
      accountId: null,
      severity: 'warning',
      message: 'm',
      details: {},
    };
    return { id, condition };
  };
  /** Queues a notification as the evaluator does; returns its title and id. */
  const queue = async (a: { id: string; condition: AlertCondition }, what: 'raised' | 'resolved') => {
    const id = uuidv7();
    const body = alertMessageBody(what, a.condition);
    await db.query(`INSERT INTO alert_notifications (id, alert_id, what, body) VALUES ($1, $2, $3, $4)`, [
      id,
      a.id,
      what,
      JSON.stringify(body),
    ]);
    return { id, title: body.attachments[0].title };
  };
  const row = async (id: string) =>
    (
      await db.query(
        `SELECT attempts, delivered_at, last_error, next_attempt_at - clock_timestamp() > interval '0' AS later
           FROM alert_notifications WHERE id = $1`,
        [id],
      )
    )[0] as { attempts: number; delivered_at: Date | null; last_error: string | null; later: boolean };
  const makeDue = (id: string) =>
    db.query(`UPDATE alert_notifications SET next_attempt_at = clock_timestamp() WHERE id = $1`, [id]);

  beforeAll(async () => {
    env = await createTestEnvironment('alert_sink');
    db = createDataSource({ url: env.databaseUrl, poolSize: 2, applicationName: 'test' });
    await db.initialize();
    await runMigrations(db);
    sinkDb = createDataSource({ url: env.databaseUrl, poolSize: 2, applicationName: 'alert-sink-test' });
    await sinkDb.initialize();
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (mode === 'hang') return void hanging.push(res);
        if (mode === 'down') return void res.writeHead(503).end();
        received.push(JSON.parse(Buffer.concat(chunks).toString()).attachments[0].title);
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
    sink = newSink();
  });

  beforeEach(async () => {
    hanging.splice(0).forEach((res) => res.writeHead(503).end());
    mode = 'up';
    received = [];
    await db.query(`DELETE FROM alert_notifications`);
  });

  afterAll(async () => {
    for (const res of hanging) res.end();
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
    await sinkDb?.destroy();
    await db?.destroy();
    await env?.dispose();
  });

  it('calls the webhook with no transaction open, so a hanging webhook holds back no snapshot the relay reads', async () => {
    const n = await queue(await alert('relay-lag', 'system'), 'raised');
    mode = 'hang';
    const delivering = sink.deliverDue();
    await eventually('the webhook is called', async () => hanging.length === 1);

    // The relay publishes only events below pg_snapshot_xmin: a sink backend holding an xid or a
    // snapshot, or idle in a transaction, would hold every service's events back.
    const busy = await db.query(
      `SELECT state, backend_xid, backend_xmin FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'alert-sink-test'
          AND (state <> 'idle' OR backend_xid IS NOT NULL OR backend_xmin IS NOT NULL)`,
    );
    expect(busy).toEqual([]);
    // Meanwhile the claim is committed: the notification is not due again until it expires.
    expect(await row(n.id)).toMatchObject({ attempts: 0, delivered_at: null, later: true });

    hanging.splice(0).forEach((res) => res.writeHead(200).end());
    await delivering;
    expect(await row(n.id)).toMatchObject({ attempts: 1, delivered_at: expect.any(Date) });
  });

  it('retries a claim whose holder never recorded an outcome once the claim expires, and only then', async () => {
    const n = await queue(await alert('ingest-backlog', 'system'), 'raised');
    mode = 'hang';
    const crashed = sink.deliverDue();
    await eventually('the webhook is called', async () => hanging.length === 1);

    // Another replica finds the notification claimed, and leaves it.
    mode = 'up';
    const replica = newSink();
    await replica.deliverDue();
    expect(received).toEqual([]);

    // The claim runs out (its holder died): the replica delivers it, once.
    await makeDue(n.id);
    await replica.deliverDue();
    expect(received).toEqual(['Alert: ingest-backlog (system)']);
    expect(await row(n.id)).toMatchObject({ attempts: 1, delivered_at: expect.any(Date) });

    // The first holder's late failure does not undo the delivery.
    hanging.splice(0).forEach((res) => res.writeHead(503).end());
    await crashed;
    expect(await row(n.id)).toMatchObject({ attempts: 1, delivered_at: expect.any(Date) });
  });

  it('records a failure and backs off, 1 s doubling', async () => {
    const n = await queue(await alert('service-failing', 'service:a'), 'raised');
    mode = 'down';
    await sink.deliverDue();
    expect(await row(n.id)).toMatchObject({
      attempts: 1,
      delivered_at: null,
      last_error: 'HTTP 503',
      later: true,
    });
    await makeDue(n.id);
    await sink.deliverDue();
    const [{ wait }] = await db.query(
      `SELECT extract(epoch FROM next_attempt_at - clock_timestamp()) AS wait FROM alert_notifications WHERE id = $1`,
      [n.id],
    );
    expect(await row(n.id)).toMatchObject({ attempts: 2, delivered_at: null });
    expect(Number(wait)).toBeGreaterThan(1.5);
    expect(Number(wait)).toBeLessThanOrEqual(2);
  });

  it('never delivers a later notification of an alert, or of a later alert of its kind and subject, before an earlier one', async () => {
    const first = await alert('task-stalled', 'task:1');
    const raised = await queue(first, 'raised');
    const other = await queue(await alert('task-stalled', 'task:2'), 'raised');
    // The webhook is down when the alert is raised...
    mode = 'down';
    await sink.deliverDue();
    expect(await row(raised.id)).toMatchObject({ attempts: 1, later: true });
    expect(await row(other.id)).toMatchObject({ attempts: 1, later: true });
    await makeDue(other.id);
    // ...and back, with the raised one still waiting out its backoff, when the alert resolves and
    // the same condition is raised again as a new alert.
    await db.query(`UPDATE alerts SET status = 'resolved', resolved_at = now() WHERE id = $1`, [first.id]);
    const resolved = await queue(first, 'resolved');
    const again = await queue(await alert('task-stalled', 'task:1'), 'raised');
    mode = 'up';
    await sink.deliverDue();
    expect(received).toEqual(['Alert: task-stalled (task:2)']);

    await makeDue(raised.id);
    for (let i = 0; i < 3; i++) await sink.deliverDue();
    expect(received).toEqual(['Alert: task-stalled (task:2)', raised.title, resolved.title, again.title]);
    expect([raised.title, resolved.title, again.title]).toEqual([
      'Alert: task-stalled (task:1)',
      'Resolved: task-stalled (task:1)',
      'Alert: task-stalled (task:1)',
    ]);
  });
});
