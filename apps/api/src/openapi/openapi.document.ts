import type { OpenAPIObject } from '@nestjs/swagger';
import { z } from 'zod';
import { createAccountSchema } from '../accounts/accounts.controller';
import { listAlertsQuery } from '../alerts/alerts.controller';
import { listEventLogsQuery } from '../event-logs/event-logs.controller';
import { listContactsQuery, upsertContactsSchema } from '../contacts/contacts.schemas';
import { createServiceSchema, freezeServiceSchema, updateServiceSchema } from '../services/services.schemas';
import { createTaskSchema, listSubTasksQuery, listTasksQuery } from '../tasks/tasks.schemas';

interface Route {
  method: 'get' | 'post' | 'patch';
  path: string;
  summary: string;
  body?: z.ZodType;
  query?: z.ZodObject;
  contentType?: string;
  created?: boolean;
}

/** The documented surface: every route with the same zod schema that validates it at run time. */
const routes: Route[] = [
  {
    method: 'post',
    path: '/api/v1/accounts',
    summary: 'Create an account (admin key); returns its API key once',
    body: createAccountSchema,
    created: true,
  },
  { method: 'get', path: '/api/v1/accounts', summary: 'List accounts (admin key)' },
  {
    method: 'post',
    path: '/api/v1/services',
    summary: 'Create a sending service; credentials are write-only',
    body: createServiceSchema,
    created: true,
  },
  { method: 'get', path: '/api/v1/services', summary: 'List sending services with status and quota' },
  { method: 'get', path: '/api/v1/services/{id}', summary: 'Get a sending service' },
  {
    method: 'patch',
    path: '/api/v1/services/{id}',
    summary: 'Change a sending service',
    body: updateServiceSchema,
  },
  {
    method: 'post',
    path: '/api/v1/services/{id}/freeze',
    summary: 'Freeze a service with a reason',
    body: freezeServiceSchema,
  },
  { method: 'post', path: '/api/v1/services/{id}/unfreeze', summary: 'Unfreeze a service' },
  { method: 'post', path: '/api/v1/services/{id}/disable', summary: 'Disable a service' },
  { method: 'post', path: '/api/v1/services/{id}/enable', summary: 'Enable a disabled service' },
  {
    method: 'post',
    path: '/api/v1/contacts',
    summary: 'Create or merge contacts (up to 10,000)',
    body: upsertContactsSchema,
  },
  {
    method: 'post',
    path: '/api/v1/contacts/import',
    summary: 'Import contacts from CSV with a header row (email, name, tags, attributes…)',
    contentType: 'text/csv',
  },
  { method: 'get', path: '/api/v1/contacts', summary: 'List contacts', query: listContactsQuery },
  { method: 'post', path: '/api/v1/templates', summary: 'Create a template', created: true },
  { method: 'get', path: '/api/v1/templates', summary: 'List templates' },
  { method: 'get', path: '/api/v1/templates/{id}', summary: 'Get a template' },
  { method: 'patch', path: '/api/v1/templates/{id}', summary: 'Change a template' },
  {
    method: 'post',
    path: '/api/v1/tasks',
    summary: 'Create a task; honours Idempotency-Key',
    body: createTaskSchema,
    created: true,
  },
  { method: 'get', path: '/api/v1/tasks', summary: 'List tasks', query: listTasksQuery },
  {
    method: 'get',
    path: '/api/v1/tasks/{id}',
    summary: 'Get a task with exact live counts and the per-service split',
  },
  {
    method: 'get',
    path: '/api/v1/tasks/{id}/subtasks',
    summary: 'List a task sub-tasks',
    query: listSubTasksQuery,
  },
  { method: 'get', path: '/api/v1/tasks/{id}/events', summary: 'The task event timeline' },
  { method: 'post', path: '/api/v1/tasks/{id}/pause', summary: 'Pause a task' },
  { method: 'post', path: '/api/v1/tasks/{id}/resume', summary: 'Resume a paused task' },
  {
    method: 'post',
    path: '/api/v1/tasks/{id}/cancel',
    summary: 'Cancel a task; its pending sub-tasks become cancelled',
  },
  {
    method: 'get',
    path: '/api/v1/tasks/{id}/diagnosis',
    summary: 'Diagnose a task: counts, services, webhooks, stuck leases, alerts, verdict',
  },
  {
    method: 'post',
    path: '/api/v1/tasks/{id}/repair',
    summary:
      'Repair a task (idempotent): release stuck leases, retry unmatched webhooks, wake the dispatcher',
  },
  {
    method: 'get',
    path: '/api/v1/alerts',
    summary: 'List alerts (firing or resolved)',
    query: listAlertsQuery,
  },
  { method: 'post', path: '/api/v1/alerts/{id}/acknowledge', summary: 'Acknowledge an alert' },
  {
    method: 'get',
    path: '/api/v1/event-logs',
    summary: 'List provider events received (newest first), by task and match status',
    query: listEventLogsQuery,
  },
];

const jsonSchema = (schema: z.ZodType) =>
  z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;

export function buildOpenApiDocument(): OpenAPIObject {
  const paths: OpenAPIObject['paths'] = {};
  for (const route of routes) {
    const parameters = [
      ...(route.path.includes('{id}')
        ? [{ name: 'id', in: 'path' as const, required: true, schema: { type: 'string', format: 'uuid' } }]
        : []),
      ...Object.keys(route.query?.shape ?? {}).map((name) => ({
        name,
        in: 'query' as const,
        required: false,
        schema: { type: 'string' },
      })),
      ...(route.path === '/api/v1/tasks' && route.method === 'post'
        ? [
            {
              name: 'Idempotency-Key',
              in: 'header' as const,
              required: false,
              schema: { type: 'string', maxLength: 200 },
            },
          ]
        : []),
    ];
    paths[route.path] = {
      ...(paths[route.path] ?? {}),
      [route.method]: {
        summary: route.summary,
        security: [{ bearer: [] }],
        parameters,
        ...(route.body || route.contentType
          ? {
              requestBody: {
                required: true,
                content: {
                  [route.contentType ?? 'application/json']: {
                    schema: route.body ? jsonSchema(route.body) : { type: 'string' },
                  },
                },
              },
            }
          : {}),
        responses: {
          [route.created ? '201' : '200']: { description: 'OK' },
          '400': {
            description: 'Validation failed: `{ error: { code, message, fields: [{ field, message }] } }`',
          },
          '401': { description: 'Missing or unknown API key' },
          '404': { description: 'Not found (or another account’s)' },
          '413': { description: 'Body too large' },
        },
      },
    };
  }
  return {
    openapi: '3.0.3',
    info: {
      title: 'EDM dispatch API',
      version: '1',
      description: 'Tasks, sub-tasks, sending services, contacts and templates.',
    },
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    paths,
  };
}
