import { DynamicModule, Module } from '@nestjs/common';
import { AppConfig } from '@edm/config';
import { EventBusSubscriber, PlatformModule } from '@edm/platform';
import { DispatcherService } from './dispatch/dispatcher.service';

@Module({})
export class DispatcherModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: DispatcherModule,
      imports: [PlatformModule.forRoot('dispatcher', config)],
      providers: [EventBusSubscriber, DispatcherService],
    };
  }
}
