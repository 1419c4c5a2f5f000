import 'reflect-metadata';
import { runService } from '@edm/platform';
import { MonitorModule } from './monitor.module';

void runService({
  service: 'monitor',
  module: (config) => MonitorModule.forRoot(config),
  port: (config) => config.MONITOR_PORT,
});
