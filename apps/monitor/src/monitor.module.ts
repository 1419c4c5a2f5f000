import { DynamicModule, Module } from '@nestjs/common';
import { AppConfig } from '@edm/config';
import { PlatformModule } from '@edm/platform';
import { EventBusSubscriber } from './event-bus/event-bus.subscriber';

@Module({})
export class MonitorModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: MonitorModule,
      imports: [PlatformModule.forRoot('monitor', config)],
      providers: [EventBusSubscriber],
    };
  }
}
