/*
 * GeoWarn's Mosquitto plugin for national-profile devices.
 *
 * China's universal geohazard devices publish every reading on the one topic "$dp" and put
 * their id inside the JSON, so a broker cannot tell from the topic who is speaking, and
 * Mosquitto 2.0 does not deliver "$"-topics to MQTT shared subscriptions ($share/...), so
 * several gateways could not split them. This plugin binds each message to the authenticated
 * username (= the device id) by rewriting, after the broker's ACL check:
 *
 *     $dp          ->  gw/nat/{username}/dp
 *     $dr          ->  gw/nat/{username}/dr
 *     $crsp/{cmd}  ->  gw/nat/{username}/crsp/{cmd}
 *
 * The gateway then rejects a frame whose inner device id differs from {username}. A client
 * without a username (anonymous listeners, development only) is left untouched.
 * This is the same idea as an EMQX topic rewrite of $dp to a per-client topic.
 */
#include <stdio.h>
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

static mosquitto_plugin_id_t *plugin_id = NULL;

static char *rewritten(const char *username, const char *topic)
{
	const char *suffix = NULL;
	const char *tail = "";
	size_t len;
	char *out;

	if(strcmp(topic, "$dp") == 0){
		suffix = "dp";
	}else if(strcmp(topic, "$dr") == 0){
		suffix = "dr";
	}else if(strncmp(topic, "$crsp/", 6) == 0 && topic[6] != '\0'){
		suffix = "crsp/";
		tail = topic + 6;
	}else{
		return NULL;
	}
	len = strlen("gw/nat/") + strlen(username) + 1 + strlen(suffix) + strlen(tail) + 1;
	out = mosquitto_malloc(len);
	if(out){
		snprintf(out, len, "gw/nat/%s/%s%s", username, suffix, tail);
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
	if(ed->topic == NULL || ed->topic[0] != '$'){
		return MOSQ_ERR_SUCCESS;
	}
	username = mosquitto_client_username(ed->client);
	/* A username that could not be one topic level is refused rather than rewritten. */
	if(username == NULL){
		return MOSQ_ERR_SUCCESS;
	}
	if(username[0] == '\0' || strpbrk(username, "/+#") != NULL){
		return MOSQ_ERR_ACL_DENIED;
	}
	topic = rewritten(username, ed->topic);
	if(topic == NULL){
		return MOSQ_ERR_SUCCESS;
	}
	mosquitto_free(ed->topic);
	ed->topic = topic;
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
	(void)user_data;
	(void)opts;
	(void)opt_count;
	plugin_id = identifier;
	return mosquitto_callback_register(plugin_id, MOSQ_EVT_MESSAGE, on_message, NULL, NULL);
}

int mosquitto_plugin_cleanup(void *user_data, struct mosquitto_opt *opts, int opt_count)
{
	(void)user_data;
	(void)opts;
	(void)opt_count;
	return mosquitto_callback_unregister(plugin_id, MOSQ_EVT_MESSAGE, on_message, NULL);
}
