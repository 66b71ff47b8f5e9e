/* The recompute policy of models (core/model.c): parsing and naming of "none" / "layer" / "offload" / "selective", the setter's
 * checks, the memory plan's argument checks and its answer for cpu models (the GPU side: tests/gpu/
 * test_model_longctx.c), and that the cpu, which keeps every activation whatever the policy, computes the same
 * loss under each. */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "model.h"
#include "testutil.h"

int main(void) {
  pose_recompute r = POSE_RECOMPUTE_NONE;
  CHECK_OK(pose_recompute_parse("none", &r));
  CHECK(r == POSE_RECOMPUTE_NONE);
  CHECK_OK(pose_recompute_parse("layer", &r));
  CHECK(r == POSE_RECOMPUTE_LAYER);
  CHECK_OK(pose_recompute_parse("offload", &r));
  CHECK(r == POSE_RECOMPUTE_OFFLOAD);
  CHECK_OK(pose_recompute_parse("selective", &r));
  CHECK(r == POSE_RECOMPUTE_SELECTIVE);
  const pose_recompute all[4] = {POSE_RECOMPUTE_NONE, POSE_RECOMPUTE_LAYER, POSE_RECOMPUTE_OFFLOAD,
                                 POSE_RECOMPUTE_SELECTIVE};
  for (int i = 0; i < 4; i++) { /* name and parse are inverse */
    pose_recompute back = (pose_recompute)-1;
    CHECK_OK(pose_recompute_parse(pose_recompute_name(all[i]), &back));
    CHECK(back == all[i]);
  }
  CHECK(strcmp(pose_recompute_name((pose_recompute)7), "?") == 0);
  r = POSE_RECOMPUTE_LAYER;
  CHECK_ERR(pose_recompute_parse("Offload", &r), POSE_EINVAL, "unknown recompute policy 'Offload' (none, layer, offload, selective)");
  CHECK_ERR(pose_recompute_parse("", &r), POSE_EINVAL, "none, layer, offload");
  CHECK_ERR(pose_recompute_parse("offload ", &r), POSE_EINVAL, "unknown recompute policy");
  CHECK(r == POSE_RECOMPUTE_LAYER); /* untouched on error */

  cJSON *cfg = cJSON_Parse("{\"model_type\":\"llama\",\"vocab_size\":50,\"hidden_size\":32,\"intermediate_size\":48,"
                           "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"num_key_value_heads\":1,"
                           "\"max_position_embeddings\":64,\"initializer_range\":0.1}");
  pose_model *m = NULL;
  CHECK_OK(pose_model_init(cfg, 3, POSE_DEVICE_CPU, &m));
  cJSON_Delete(cfg);
  if (!m) return test_summary("test_recompute");
  CHECK(pose_model_get_recompute(m) == POSE_RECOMPUTE_NONE);
  int64_t ids[12] = {1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9};
  double loss[4];
  for (int i = 0; i < 4; i++) {
    CHECK_OK(pose_model_set_recompute(m, all[i]));
    CHECK(pose_model_get_recompute(m) == all[i]);
    pose_model_zero_grad(m);
    CHECK_OK(pose_model_backward(m, ids, NULL, NULL, 2, 6, 1.0, &loss[i], NULL));
  }
  CHECK(loss[0] == loss[1] && loss[1] == loss[2] && loss[2] == loss[3]);
  CHECK_ERR(pose_model_set_recompute(m, (pose_recompute)4), POSE_EINVAL, "unknown recompute policy 4");
  CHECK_ERR(pose_model_set_recompute(m, (pose_recompute)-1), POSE_EINVAL, "unknown recompute policy");
  CHECK(pose_model_get_recompute(m) == POSE_RECOMPUTE_SELECTIVE); /* unchanged by the failed calls */

  /* the memory plan: argument checks first, then cpu models have none */
  pose_memory_plan p;
  CHECK_ERR(pose_model_memory_plan(m, 0, 8, 1, POSE_RECOMPUTE_NONE, &p), POSE_EINVAL, "bad shape");
  CHECK_ERR(pose_model_memory_plan(m, 1, -8, 1, POSE_RECOMPUTE_NONE, &p), POSE_EINVAL, "bad shape");
  CHECK_ERR(pose_model_memory_plan(m, 1, 8, 1, (pose_recompute)5, &p), POSE_EINVAL, "unknown recompute policy 5");
  CHECK_ERR(pose_model_memory_plan(m, 1, 8, 1, POSE_RECOMPUTE_NONE, NULL), POSE_EINVAL, "NULL");
  CHECK_ERR(pose_model_memory_plan(NULL, 1, 8, 1, POSE_RECOMPUTE_NONE, &p), POSE_EINVAL, "NULL");
  CHECK_ERR(pose_model_memory_plan(m, 1, 8, 1, POSE_RECOMPUTE_OFFLOAD, &p), POSE_EUNSUPPORTED, "only cuda models");
  pose_model_free(m);
  return test_summary("test_recompute");
}
