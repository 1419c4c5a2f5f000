/**
 * SQL over `sending_services s JOIN service_runtime r`. The runtime row keeps the count of the
 * quota window its last lease saw; once the next window starts that count is stale until a lease
 * touches the row again, so readers judge it against the window that is current now.
 */
const CURRENT_QUOTA_WINDOW_START = `((date_trunc('day', (now() AT TIME ZONE 'UTC') - make_interval(hours => s.quota_reset_hour_utc))
  + make_interval(hours => s.quota_reset_hour_utc)) AT TIME ZONE 'UTC')`;

/** Mails counted against the daily quota in the current window. */
export const QUOTA_USED_SQL = `(CASE WHEN r.quota_window_start >= ${CURRENT_QUOTA_WINDOW_START} THEN r.quota_used ELSE 0 END)`;

/** True while the service's daily quota is used up and work was held back for it in this window. */
export const QUOTA_EXHAUSTED_SQL = `coalesce(s.daily_quota IS NOT NULL AND ${QUOTA_USED_SQL} >= s.daily_quota
  AND r.quota_exhausted_at >= r.quota_window_start, false)`;
