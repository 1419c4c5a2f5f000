import { DynamicModule, Module } from '@nestjs/common';
import { AppConfig } from '@edm/config';
import { EventBusSubscriber, PlatformModule } from '@edm/platform';

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
