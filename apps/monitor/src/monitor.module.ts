import { DynamicModule, Module } from '@nestjs/common';
import { AppConfig } from '@edm/config';
import { EventBusSubscriber, PlatformModule } from '@edm/platform';
import { AlertEvaluator } from './alerts/alert-evaluator.service';
import { AlertSink } from './alerts/alert-sink';
import { MonitorStateListener } from './state/monitor-state.listener';

@Module({})
export class MonitorModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: MonitorModule,
      imports: [PlatformModule.forRoot('monitor', config)],
      providers: [EventBusSubscriber, MonitorStateListener, AlertEvaluator, AlertSink],
    };
  }
}
