/** Recognising a Redis that does not answer, without loading the Redis client (the API's 503). */

/** Whether an error means that Redis does not answer (the API's 503). */
export function isRedisDown(e: unknown): boolean {
  const err = e as NodeJS.ErrnoException;
  return /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE/.test(err?.code ?? '') || /Connection is closed|Stream isn't writeable|enableOfflineQueue|Reached the max retries|connect E/.test(err?.message ?? '');
}
