import { DynamicModule, Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { AppConfig } from '@edm/config';
import { PlatformModule } from '@edm/platform';
import { AccountsController } from './accounts/accounts.controller';
import { AlertsController } from './alerts/alerts.controller';
import { EventLogsController } from './event-logs/event-logs.controller';
import { AdminKeyBootstrap } from './auth/admin-key.bootstrap';
import { ApiKeyGuard } from './auth/api-key.guard';
import { ContactsController } from './contacts/contacts.controller';
import { ContactsService } from './contacts/contacts.service';
import { ServicesController } from './services/services.controller';
import { ServicesService } from './services/services.service';
import { TasksController } from './tasks/tasks.controller';
import { TasksService } from './tasks/tasks.service';
import { CreateTaskUseCase } from './tasks/usecases/create-task/create-task.usecase';
import { TemplatesController } from './templates/templates.controller';

@Module({})
export class ApiModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: ApiModule,
      imports: [PlatformModule.forRoot('api', config)],
      controllers: [
        AccountsController,
        ServicesController,
        ContactsController,
        TemplatesController,
        TasksController,
        AlertsController,
        EventLogsController,
      ],
      providers: [
        { provide: APP_GUARD, useClass: ApiKeyGuard },
        AdminKeyBootstrap,
        ServicesService,
        ContactsService,
        TasksService,
        CreateTaskUseCase,
      ],
    };
  }
}
