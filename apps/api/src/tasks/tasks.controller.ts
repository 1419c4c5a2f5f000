import { Body, Controller, Get, Headers, HttpCode, Param, Post, Query, Res } from '@nestjs/common';
import type { Response } from 'express';
import { ZodPipe } from '@edm/platform';
import { CurrentPrincipal, Principal } from '../auth/principal';
import {
  createTaskSchema,
  CreateTaskInput,
  listSubTasksQuery,
  ListSubTasksQuery,
  listTasksQuery,
  ListTasksQuery,
} from './tasks.schemas';
import { TasksService } from './tasks.service';
import { CreateTaskUseCase } from './usecases/create-task/create-task.usecase';

@Controller('api/v1/tasks')
export class TasksController {
  constructor(
    private readonly tasks: TasksService,
    private readonly createTask: CreateTaskUseCase,
  ) {}

  @Post()
  async create(
    @CurrentPrincipal() p: Principal,
    @Body(new ZodPipe(createTaskSchema)) body: CreateTaskInput,
    @Headers('idempotency-key') idempotencyKey: string | undefined,
    @Res({ passthrough: true }) response: Response,
  ) {
    const result = await this.createTask.execute(p, body, idempotencyKey);
    response.status(result.status);
    return result.body;
  }

  @Get()
  list(@CurrentPrincipal() p: Principal, @Query(new ZodPipe(listTasksQuery)) query: ListTasksQuery) {
    return this.tasks.list(p, query);
  }

  @Get(':id')
  get(@CurrentPrincipal() p: Principal, @Param('id') id: string) {
    return this.tasks.get(p, id);
  }

  @Get(':id/subtasks')
  subTasks(
    @CurrentPrincipal() p: Principal,
    @Param('id') id: string,
    @Query(new ZodPipe(listSubTasksQuery)) query: ListSubTasksQuery,
  ) {
    return this.tasks.subTasks(p, id, query);
  }

  @Get(':id/events')
  timeline(@CurrentPrincipal() p: Principal, @Param('id') id: string) {
    return this.tasks.timeline(p, id);
  }

  @Get(':id/diagnosis')
  diagnosis(@CurrentPrincipal() p: Principal, @Param('id') id: string) {
    return this.tasks.diagnose(p, id);
  }

  @Post(':id/repair')
  @HttpCode(200)
  repair(@CurrentPrincipal() p: Principal, @Param('id') id: string) {
    return this.tasks.repair(p, id);
  }

  @Post(':id/pause')
  @HttpCode(200)
  pause(@CurrentPrincipal() p: Principal, @Param('id') id: string) {
    return this.tasks.transition(p, id, 'pause');
  }

  @Post(':id/resume')
  @HttpCode(200)
  resume(@CurrentPrincipal() p: Principal, @Param('id') id: string) {
    return this.tasks.transition(p, id, 'resume');
  }

  @Post(':id/cancel')
  @HttpCode(200)
  cancel(@CurrentPrincipal() p: Principal, @Param('id') id: string) {
    return this.tasks.transition(p, id, 'cancel');
  }
}
