/*
 * GeoWarn's Mosquitto plugin (plugin API version 5, Mosquitto 2.0).
 *
 * 1. National identity. China's universal geohazard devices publish every reading on the one
 *    topic "$dp" and put their id inside the JSON, so a broker cannot tell from the topic who
 *    is speaking, and Mosquitto 2.0 does not deliver "$"-topics to MQTT shared subscriptions,
 *    so several gateways could not split them. Every national uplink is bound to the
 *    authenticated username (= the device id) by rewriting it, after the broker's ACL check:
 *
 *        $dp, $dp/{id}  ->  gw/nat/{username}/dp/{broker receive time, us since the epoch}
 *        $dr, $dr/{id}  ->  gw/nat/{username}/dr
 *        $crsp/{cmd}    ->  gw/nat/{username}/crsp/{cmd}
 *
 *    The gateway rejects a frame whose inner device id differs from {username}. The receive
 *    time in the topic is the time of a plain (untimestamped) value: it travels with the
 *    message, so a redelivery, a second gateway or an adopted session sees the same time and
 *    the store's (channel, time) key stores the value once. The retain flag of a national
 *    uplink is cleared: a retained frame would be served again on every subscription.
 *    A client without a username (anonymous development listeners) is left untouched.
 *
 * 2. Session and subscription hardening, enabled by `plugin_opt_service_users a,b` (what
 *    `geowarn devices broker-config` writes, always with a password file and an ACL file):
 *    - client ids are bound to the username at CONNECT: a device must connect with client
 *      id = its username; a service account (gateway, engine) with its username or
 *      "{username}:{instance}". Another client id is refused before the broker looks for an
 *      existing session, so nobody can take over someone else's session or fire its will.
 *    - devices may SUBSCRIBE only to their own command topics (gw/v1/{u}/cmd/+ or /{id},
 *      $creq/{u}/+ or /{id}); anything else, $share/... included, is refused in the SUBACK.
 *      (Mosquitto's ACL file grants every subscription and filters only at delivery, so a
 *      device in a gateways' share group took a share that was then dropped.)
 *    - with `plugin_opt_device_rate PER_SECOND,BURST`, each device username has a token
 *      bucket of BURST messages refilled at PER_SECOND; a publish beyond it is refused
 *      (PUBACK "not authorized"; Mosquitto then closes the connection), so one device cannot
 *      flood the broker and the gateways. Mosquitto 2.0 itself has no per-client rate limit.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define MAX_SERVICE_USERS 16

static mosquitto_plugin_id_t *plugin_id = NULL;
static char *service_users[MAX_SERVICE_USERS];
static int service_user_count = 0;
static bool hardening = false;

/* Per-device token buckets: open addressing on the username, a fixed table. */
#define BUCKETS 65536
#define MAX_NAME 64
struct bucket {
	char name[MAX_NAME + 1];
	double tokens;
	double updated;
};
static struct bucket *buckets = NULL;
static double rate_per_s = 0.0;
static double burst = 0.0;

static bool is_service_user(const char *username)
{
	int i;

	for(i = 0; i < service_user_count; i++){
		if(strcmp(service_users[i], username) == 0){
			return true;
		}
	}
	return false;
}

/* --- 2. publish rate per device ------------------------------------------------------- */

static double now_s(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

/* True when `username` may publish one more message now. */
static bool take_token(const char *username)
{
	unsigned long h = 5381;
	const char *c;
	size_t i;
	double now;
	struct bucket *b;

	if(buckets == NULL || strlen(username) > MAX_NAME){
		return true;
	}
	for(c = username; *c; c++){
		h = h * 33 + (unsigned char)*c;
	}
	now = now_s();
	for(i = 0; i < BUCKETS; i++){
		b = &buckets[(h + i) % BUCKETS];
		if(b->name[0] == '\0'){
			strcpy(b->name, username);
			b->tokens = burst;
			b->updated = now;
		}else if(strcmp(b->name, username) != 0){
			continue;
		}
		b->tokens += (now - b->updated) * rate_per_s;
		if(b->tokens > burst){
			b->tokens = burst;
		}
		b->updated = now;
		if(b->tokens < 1.0){
			return false;
		}
		b->tokens -= 1.0;
		return true;
	}
	return true; /* table full: more devices than buckets; not limited */
}

/* --- 1. national identity and receive time ------------------------------------------- */

static char *rewritten(const char *username, const char *topic)
{
	char tail[64] = "";
	const char *suffix = NULL;
	const char *cmd = "";
	struct timespec now;
	size_t len;
	char *out;

	if(strcmp(topic, "$dp") == 0 || strncmp(topic, "$dp/", 4) == 0){
		clock_gettime(CLOCK_REALTIME, &now);
		snprintf(tail, sizeof(tail), "/%lld",
				(long long)now.tv_sec * 1000000LL + (long long)(now.tv_nsec / 1000));
		suffix = "dp";
	}else if(strcmp(topic, "$dr") == 0 || strncmp(topic, "$dr/", 4) == 0){
		suffix = "dr";
	}else if(strncmp(topic, "$crsp/", 6) == 0 && topic[6] != '\0'){
		suffix = "crsp/";
		cmd = topic + 6;
	}else{
		return NULL;
	}
	len = strlen("gw/nat/") + strlen(username) + 1 + strlen(suffix) + strlen(cmd)
		+ strlen(tail) + 1;
	out = mosquitto_malloc(len);
	if(out){
		snprintf(out, len, "gw/nat/%s/%s%s%s", username, suffix, cmd, tail);
	}
	return out;
}

static int on_message(int event, void *event_data, void *user_data)
{
	struct mosquitto_evt_message *ed = event_data;
	const char *username;
	char *topic;

	(void)event;
	(void)user_data;
	username = mosquitto_client_username(ed->client);
	if(username != NULL && hardening && !is_service_user(username) && !take_token(username)){
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "geowarn: refused a publish of device \"%s\" "
				"over its rate (%g/s, burst %g)", username, rate_per_s, burst);
		return MOSQ_ERR_ACL_DENIED;
	}
	if(ed->topic == NULL || ed->topic[0] != '$' || username == NULL){
		return MOSQ_ERR_SUCCESS;
	}
	/* A username that could not be one topic level is refused rather than rewritten. */
	if(username[0] == '\0' || strpbrk(username, "/+#") != NULL){
		return MOSQ_ERR_ACL_DENIED;
	}
	topic = rewritten(username, ed->topic);
	if(topic == NULL){
		return MOSQ_ERR_SUCCESS;
	}
	mosquitto_free(ed->topic);
	ed->topic = topic;
	ed->retain = false;
	return MOSQ_ERR_SUCCESS;
}

/* --- 2. client id binding ------------------------------------------------------------- */

static int on_basic_auth(int event, void *event_data, void *user_data)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	const char *client_id = mosquitto_client_id(ed->client);
	const char *username = ed->username;
	size_t ulen;

	(void)event;
	(void)user_data;
	if(username == NULL){
		return MOSQ_ERR_PLUGIN_DEFER; /* the password file refuses or allow_anonymous admits */
	}
	if(client_id != NULL && strcmp(client_id, username) == 0){
		return MOSQ_ERR_PLUGIN_DEFER; /* the password file checks the secret */
	}
	ulen = strlen(username);
	if(client_id != NULL && is_service_user(username)
			&& strncmp(client_id, username, ulen) == 0 && client_id[ulen] == ':'){
		return MOSQ_ERR_PLUGIN_DEFER;
	}
	mosquitto_log_printf(MOSQ_LOG_NOTICE,
			"geowarn: refused client id \"%s\" for user \"%s\": devices connect with client "
			"id = username, service accounts with \"username:instance\"",
			client_id ? client_id : "", username);
	return MOSQ_ERR_AUTH;
}

/* --- 2. subscription policy ----------------------------------------------------------- */

/* True when `filter` is prefix followed by exactly one topic level that is '+' or literal. */
static bool one_level_after(const char *filter, const char *prefix)
{
	size_t plen = strlen(prefix);
	const char *rest;

	if(strncmp(filter, prefix, plen) != 0){
		return false;
	}
	rest = filter + plen;
	if(rest[0] == '\0' || strchr(rest, '/') != NULL || strchr(rest, '#') != NULL){
		return false;
	}
	return strchr(rest, '+') == NULL || strcmp(rest, "+") == 0;
}

static bool own_command_topic(const char *username, const char *filter)
{
	char prefix[512];

	if(snprintf(prefix, sizeof(prefix), "gw/v1/%s/cmd/", username) < (int)sizeof(prefix)
			&& one_level_after(filter, prefix)){
		return true;
	}
	if(snprintf(prefix, sizeof(prefix), "$creq/%s/", username) < (int)sizeof(prefix)
			&& one_level_after(filter, prefix)){
		return true;
	}
	return false;
}

static int on_acl_check(int event, void *event_data, void *user_data)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	const char *username;

	(void)event;
	(void)user_data;
	if(ed->access != MOSQ_ACL_SUBSCRIBE){
		return MOSQ_ERR_PLUGIN_DEFER; /* publish and delivery: the ACL file decides */
	}
	username = mosquitto_client_username(ed->client);
	if(username == NULL || is_service_user(username)){
		return MOSQ_ERR_PLUGIN_DEFER;
	}
	if(strpbrk(username, "/+#") == NULL && own_command_topic(username, ed->topic)){
		return MOSQ_ERR_PLUGIN_DEFER;
	}
	mosquitto_log_printf(MOSQ_LOG_NOTICE,
			"geowarn: refused subscription of device \"%s\" to \"%s\": devices subscribe "
			"only to their own command topics", username, ed->topic);
	return MOSQ_ERR_ACL_DENIED;
}

/* --- plugin entry points ---------------------------------------------------------------- */

static int parse_service_users(const char *value)
{
	char *copy = strdup(value);
	char *saveptr = NULL;
	char *name;

	if(copy == NULL){
		return MOSQ_ERR_NOMEM;
	}
	for(name = strtok_r(copy, ", ", &saveptr); name; name = strtok_r(NULL, ", ", &saveptr)){
		if(service_user_count == MAX_SERVICE_USERS){
			free(copy);
			mosquitto_log_printf(MOSQ_LOG_ERR, "geowarn: more than %d service users",
					MAX_SERVICE_USERS);
			return MOSQ_ERR_INVAL;
		}
		service_users[service_user_count] = strdup(name);
		if(service_users[service_user_count] == NULL){
			free(copy);
			return MOSQ_ERR_NOMEM;
		}
		service_user_count++;
	}
	free(copy);
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	(void)supported_version_count;
	(void)supported_versions;
	return 5;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **user_data,
		struct mosquitto_opt *opts, int opt_count)
{
	int i;
	int rc;

	(void)user_data;
	plugin_id = identifier;
	for(i = 0; i < opt_count; i++){
		if(strcmp(opts[i].key, "service_users") == 0){
			rc = parse_service_users(opts[i].value);
			if(rc != MOSQ_ERR_SUCCESS){
				return rc;
			}
			hardening = true;
		}else if(strcmp(opts[i].key, "device_rate") == 0){
			if(sscanf(opts[i].value, "%lf,%lf", &rate_per_s, &burst) != 2
					|| rate_per_s <= 0.0 || burst < 1.0){
				mosquitto_log_printf(MOSQ_LOG_ERR, "geowarn: device_rate must be "
						"PER_SECOND,BURST (positive), got \"%s\"", opts[i].value);
				return MOSQ_ERR_INVAL;
			}
			buckets = calloc(BUCKETS, sizeof(struct bucket));
			if(buckets == NULL){
				return MOSQ_ERR_NOMEM;
			}
		}
	}
	rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_MESSAGE, on_message, NULL, NULL);
	if(rc != MOSQ_ERR_SUCCESS || !hardening){
		return rc;
	}
	/* Registered before the broker's own password and ACL checks, which run after these
	 * defer. Only with hardening: an ACL callback that defers on a broker without an ACL
	 * file would make Mosquitto deny everything. */
	rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL);
	if(rc != MOSQ_ERR_SUCCESS){
		return rc;
	}
	mosquitto_log_printf(MOSQ_LOG_INFO, "geowarn: client ids bound to usernames, device "
			"subscriptions limited; %d service user(s)", service_user_count);
	return mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
}

int mosquitto_plugin_cleanup(void *user_data, struct mosquitto_opt *opts, int opt_count)
{
	int i;

	(void)user_data;
	(void)opts;
	(void)opt_count;
	if(hardening){
		mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
		mosquitto_callback_unregister(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	}
	for(i = 0; i < service_user_count; i++){
		free(service_users[i]);
	}
	free(buckets);
	buckets = NULL;
	service_user_count = 0;
	hardening = false;
	return mosquitto_callback_unregister(plugin_id, MOSQ_EVT_MESSAGE, on_message, NULL);
}
