import { DynamicModule, Module } from '@nestjs/common';
import { AppConfig } from '@edm/config';
import { PlatformModule } from '@edm/platform';
import { EventBusSubscriber } from './event-bus/event-bus.subscriber';

@Module({})
export class DispatcherModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: DispatcherModule,
      imports: [PlatformModule.forRoot('dispatcher', config)],
      providers: [EventBusSubscriber],
    };
  }
}
