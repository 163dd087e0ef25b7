add_library(ferry_engine
  ${CMAKE_CURRENT_SOURCE_DIR}/engine.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/input_validation.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/engine_migration.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/engine_lending.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/dist_attention.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/engine_prefix.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/step_scheduler.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/stop_checker.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/llama_forward.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/partial_attention.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/forward_batch.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/cpu_backend.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/sim_backend.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/model_config.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/model_loader.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/ngram_draft.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/reasoning_tracker.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/sampler.cc
  ${CMAKE_CURRENT_SOURCE_DIR}/sampling_params.cc)
target_link_libraries(ferry_engine PUBLIC
  ferry_kvcache ferry_formats ferry_tokenizer ferry_cpu_kernels ferry_sim_cost_model ferry_common
  ferry_structured nlohmann_json::nlohmann_json)
if(FERRY_HAVE_CUDA)
  target_sources(ferry_engine PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/cuda_backend.cc)
  target_link_libraries(ferry_engine PUBLIC ferry_cuda)
else()
  target_sources(ferry_engine PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/cuda_backend_none.cc)
endif()
ferry_target_warnings(ferry_engine)
