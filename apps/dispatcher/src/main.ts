import 'reflect-metadata';
import { runService } from '@edm/platform';
import { DispatcherModule } from './dispatcher.module';

void runService({
  service: 'dispatcher',
  module: (config) => DispatcherModule.forRoot(config),
  port: (config) => config.DISPATCHER_PORT,
});
