import { ArgumentsHost, Catch, ExceptionFilter, HttpException } from '@nestjs/common';
import type { Response } from 'express';
import { EventTooLargeError } from '@edm/event-store';
import { JsonLogger } from '@edm/observability';
import { DomainError, DomainErrorCode, HTTP_STATUS } from './domain-error';

export interface ErrorBody {
  error: { code: string; message: string; fields?: { field: string; message: string }[] };
}

/** Errors Express' body parser raises before our code runs, by their `type`. */
const BODY_PARSER_ERRORS: Record<string, [DomainErrorCode, string]> = {
  'entity.too.large': ['PAYLOAD_TOO_LARGE', 'request body is too large'],
  'entity.too.deep': ['VALIDATION_FAILED', 'request body is nested too deeply'],
  'entity.parse.failed': ['VALIDATION_FAILED', 'request body is not valid JSON'],
  'entity.verify.failed': ['VALIDATION_FAILED', 'request body is not valid JSON'],
  'encoding.unsupported': ['UNSUPPORTED_MEDIA_TYPE', 'unsupported request encoding'],
  'charset.unsupported': ['UNSUPPORTED_MEDIA_TYPE', 'unsupported request encoding'],
  'request.aborted': ['VALIDATION_FAILED', 'request body is not valid JSON'],
};

/**
 * The status and body every HTTP error is answered with; anything unexpected is a plain 500
 * without internals. Also used by routes answered outside Express (webhook intake).
 */
export function describeError(exception: unknown): [number, ErrorBody] {
  if (exception instanceof DomainError) {
    return [
      HTTP_STATUS[exception.code],
      { error: { code: exception.code, message: exception.message, fields: exception.fields } },
    ];
  }
  if (exception instanceof EventTooLargeError) {
    // What would be recorded is too large to record (a task's content, most likely): the request's.
    const message = `the request makes a ${exception.type} event of ${exception.bytes} bytes; at most ${exception.maxBytes} fit`;
    return [HTTP_STATUS.PAYLOAD_TOO_LARGE, { error: { code: 'PAYLOAD_TOO_LARGE', message } }];
  }
  const parserType = (exception as { type?: unknown })?.type;
  if (typeof parserType === 'string' && parserType in BODY_PARSER_ERRORS) {
    const [code, message] = BODY_PARSER_ERRORS[parserType];
    return [HTTP_STATUS[code], { error: { code, message } }];
  }
  if (exception instanceof HttpException) {
    const status = exception.getStatus();
    const code =
      status === 404
        ? 'NOT_FOUND'
        : status === 413
          ? 'PAYLOAD_TOO_LARGE'
          : status < 500
            ? 'BAD_REQUEST'
            : 'INTERNAL';
    return [status, { error: { code, message: status < 500 ? exception.message : 'internal error' } }];
  }
  return [500, { error: { code: 'INTERNAL', message: 'internal error' } }];
}

/** Whether an answered error is ours to log: a server fault other than "unavailable, retry". */
export const isLoggedError = (status: number): boolean => status >= 500 && status !== 503;

/** Shapes every HTTP error the same way (describeError). */
@Catch()
export class GlobalExceptionFilter implements ExceptionFilter {
  constructor(private readonly logger: JsonLogger) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const response = host.switchToHttp().getResponse<Response>();
    const [status, body] = describeError(exception);
    if (isLoggedError(status)) {
      this.logger.event('error', 'unhandled error', {
        error: exception instanceof Error ? exception.stack : String(exception),
      });
    }
    if (!response.headersSent) response.status(status).json(body);
  }
}
